"""Soak: a constant mixed load through the sidecar for minutes; its memory must stay flat.

The same set-up as ``chaos.py`` (three fake backends in a helper process, the real
``optiroute-mw serve`` as a subprocess), then an open-loop load at a fixed rate
(default 50 requests/s: half JSON, half SSE; one in ten a repeated prompt through
the cache, the rest unique with ``x-optiroute-cache: bypass``) while the primary and
secondary backends fail a share of their calls with every kind of fault.  Every
``--interval`` seconds the sidecar's RSS (``VmRSS``) and CPU are sampled and a line is
printed; at the end: requests, answered, errors, lost, RSS first/last/max and the
slope of a least-squares line through the samples (MB per minute).

    .venv/bin/python bench/soak.py                  # 10 minutes
    .venv/bin/python bench/soak.py --minutes 2 --json

Exit code 1 when a request was lost or the RSS slope over the second half of the
run is above ``--max-slope``.  It stops by itself; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from chaos_client import Outcome, Req, one_request, pct, plan, run_load
from chaos_env import (
    ANSWERED,
    ERROR,
    LOST,
    PRIMARY,
    SECONDARY,
    FakeHost,
    Sidecar,
    log,
    mixed,
    proc_cpu_s,
    proc_rss_mb,
    sidecar_env_overrides,
)

REPEATED = 32  # distinct prompts of the cached tenth of the load


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return cov / var * 60.0


def request_for(i: int, rng: random.Random) -> Req:
    if rng.random() < 0.1:  # a repeated prompt, through the cache (hits and single-flight)
        base = plan(1, offset=rng.randrange(REPEATED), bypass=False)[0]
        return Req(i, i % 2 == 1, base.prompt, bypass=False)
    base = plan(1, offset=i)[0]
    return Req(i, base.stream, base.prompt)


class Soak:
    def __init__(self, args: argparse.Namespace, host: FakeHost, sidecar: Sidecar) -> None:
        self.args = args
        self.host = host
        self.sidecar = sidecar
        self.outcomes: list[Outcome] = []
        self.kinds: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.skipped = 0
        self.sent = 0
        self.in_flight: set[asyncio.Task[None]] = set()
        self.samples: list[dict[str, Any]] = []
        self.elapsed = 0.0
        self.fault_rng = random.Random(f"{args.seed}:faults")
        self.scripted = {PRIMARY: 0, SECONDARY: 0}
        self.shares = {PRIMARY: args.fault_share, SECONDARY: args.fault_share / 2}

    def top_up_faults(self) -> None:
        """Keep a few thousand scripted calls ahead of each faulty backend."""
        for index, share in self.shares.items():
            if share <= 0:
                continue
            if self.scripted[index] - self.host.hits(index) < 1000:
                self.host.script(index, mixed(self.fault_rng, share, 2000))
                self.scripted[index] += 2000

    async def _one(self, session: Any, req: Req) -> None:
        outcome = await one_request(
            session, self.sidecar.url + "/v1/chat/completions", req, self.args.timeout
        )
        self.outcomes.append(outcome)
        self.kinds[outcome.kind] += 1
        if outcome.kind != ANSWERED:
            self.reasons[f"{outcome.kind}: {outcome.reason}"] += 1

    async def pace(self, session: Any, seconds: float) -> None:
        """Open loop: one request every 1/rate s, whatever the answers do."""
        rng = random.Random(f"{self.args.seed}:load")
        period = 1.0 / self.args.rate
        started = time.monotonic()
        next_at = started
        i = 0
        while next_at < started + seconds:
            if len(self.in_flight) >= self.args.max_in_flight:
                self.skipped += 1
            else:
                task = asyncio.create_task(self._one(session, request_for(i, rng)))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)
                self.sent += 1
            i += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def sample(self, started: float, cpu_before: tuple[float, float]) -> tuple[float, float]:
        now = time.monotonic()
        cpu = proc_cpu_s(self.sidecar.pid)
        rss = proc_rss_mb(self.sidecar.pid)
        t = now - started
        cpu_pct = 100.0 * (cpu - cpu_before[1]) / max(1e-9, now - cpu_before[0])
        done = sum(self.kinds.values())
        row = {
            "t_s": round(t, 1),
            "rss_mb": round(rss, 2),
            "cpu_pct": round(cpu_pct, 1),
            "requests": done,
            "answered": self.kinds[ANSWERED],
            "errors": self.kinds[ERROR],
            "lost": self.kinds[LOST],
            "in_flight": len(self.in_flight),
        }
        self.samples.append(row)
        print(
            f"t={t:6.0f}s  rss {rss:7.1f} MB  cpu {cpu_pct:5.1f}%  requests {done:7d}  "
            f"answered {row['answered']:7d}  errors {row['errors']:5d}  lost {row['lost']:3d}  "
            f"in-flight {row['in_flight']:3d}",
            flush=True,
        )
        return now, cpu

    async def run(self) -> None:
        import aiohttp

        args = self.args
        warm = await run_load(self.sidecar.url, plan(8, offset=10**6), 4, args.timeout)
        if any(o.kind != ANSWERED for o in warm):
            raise RuntimeError(f"warm-up failed: {[o.reason for o in warm]}")
        self.top_up_faults()
        seconds = args.minutes * 60.0
        connector = aiohttp.TCPConnector(limit=args.max_in_flight)
        async with aiohttp.ClientSession(connector=connector) as session:
            pacer = asyncio.create_task(self.pace(session, seconds))
            started = time.monotonic()
            mark = self.sample(started, (started, proc_cpu_s(self.sidecar.pid)))
            next_sample = started + args.interval
            while not pacer.done():
                await asyncio.wait({pacer}, timeout=1.0)
                self.top_up_faults()
                if time.monotonic() >= next_sample and not pacer.done():
                    mark = self.sample(started, mark)
                    next_sample += args.interval
            await pacer
            # every request has its own deadline, so this ends by itself
            if self.in_flight:
                await asyncio.wait(set(self.in_flight))
            self.sample(started, mark)
            self.elapsed = time.monotonic() - started

    def summary(self) -> dict[str, Any]:
        rss = [(s["t_s"], s["rss_mb"]) for s in self.samples]
        half = [p for p in rss if p[0] >= rss[-1][0] / 2] if rss else []
        latencies = [o.latency_ms for o in self.outcomes]
        return {
            "minutes": self.args.minutes,
            "rate": self.args.rate,
            "requests": len(self.outcomes),
            "answered": self.kinds[ANSWERED],
            "answered_pct": 100.0 * self.kinds[ANSWERED] / max(1, len(self.outcomes)),
            "errors": self.kinds[ERROR],
            "lost": self.kinds[LOST],
            "skipped": self.skipped,
            "achieved_rate": len(self.outcomes) / max(1e-9, self.elapsed),
            "p50_ms": pct(latencies, 50),
            "p99_ms": pct(latencies, 99),
            "rss_first_mb": rss[0][1] if rss else 0.0,
            "rss_last_mb": rss[-1][1] if rss else 0.0,
            "rss_max_mb": max((m for _, m in rss), default=0.0),
            "slope_mb_per_min": slope_mb_per_min(rss),
            "slope_second_half_mb_per_min": slope_mb_per_min(half),
            "not_answered": dict(self.reasons.most_common()),
            "samples": len(rss),
        }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (10)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (50)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--fault-share",
        type=float,
        default=0.05,
        help="share of primary calls that fail (secondary: half of it) (0.05)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="client deadline per request; reaching it counts as lost (15)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=200,
        help="requests not sent when this many are open (counted as skipped)",
    )
    parser.add_argument(
        "--max-slope",
        type=float,
        default=1.0,
        help="MB/min allowed for the RSS slope over the second half (1.0)",
    )
    parser.add_argument("--seed", default="1")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OPTIROUTE_X=V",
        help="extra sidecar setting (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument(
        "--json", action="store_true", help="the summary and every sample as JSON lines at the end"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="optiroute-soak-"))
    host = FakeHost(3, workdir / "fakes.log")
    sidecar = None
    try:
        sidecar = Sidecar(workdir, host.ports, sidecar_env_overrides(args.set), "soak")
        log(
            f"sidecar pid {sidecar.pid} on {sidecar.url}; {args.minutes:g} min at "
            f"{args.rate:g} req/s, faults on {args.fault_share:.0%} of primary calls"
        )
        soak = Soak(args, host, sidecar)
        asyncio.run(soak.run())
        problems = sidecar.log_problems()
    except KeyboardInterrupt:
        log("interrupted; children stopped")
        return 130
    finally:
        if sidecar is not None:
            sidecar.stop()
        host.close()
        if args.keep:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    s = soak.summary()
    print()
    print(
        f"requests {s['requests']} ({s['achieved_rate']:.1f}/s, {s['skipped']} skipped)  "
        f"answered {s['answered']} ({s['answered_pct']:.2f}%)  errors {s['errors']}  "
        f"lost {s['lost']}  p50 {s['p50_ms']:.0f} ms  p99 {s['p99_ms']:.0f} ms"
    )
    print(
        f"RSS first {s['rss_first_mb']:.1f} MB  last {s['rss_last_mb']:.1f} MB  "
        f"max {s['rss_max_mb']:.1f} MB  slope {s['slope_mb_per_min']:+.3f} MB/min "
        f"(second half {s['slope_second_half_mb_per_min']:+.3f} MB/min) over "
        f"{s['samples']} samples"
    )
    if s["not_answered"]:
        print("not answered: " + ", ".join(f"{k} x{v}" for k, v in s["not_answered"].items()))
    if problems:
        print(f"sidecar log: {len(problems)} error line(s), first: {problems[0][:300]}")
    flat = s["slope_second_half_mb_per_min"] <= args.max_slope
    ok = s["lost"] == 0 and flat
    print(
        "check: "
        + ("ok" if ok else "FAILED")
        + f" (lost {s['lost']}, RSS slope second half "
        + f"{s['slope_second_half_mb_per_min']:+.3f} <= {args.max_slope:g} MB/min: "
        + ("yes" if flat else "no")
        + ")"
    )
    if args.json:
        print(json.dumps(s, sort_keys=True))
        for sample in soak.samples:
            print(json.dumps(sample, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
