"""Fault matrix through the sidecar: every request must end in an answer or a clean error.

For each fault (one row), the run:

1. arms the fault on fake OpenAI-compatible backends (``tests/support/fake_openai.py``,
   three of them, served from a helper process so they do not share the load
   generator's interpreter),
2. starts a fresh ``optiroute-mw serve`` subprocess whose registry puts the same
   models on those backends (so breaker state never leaks from one row into the next),
3. sends a bounded load through it (default 200 requests, half JSON and half SSE,
   16 at a time, each with a 15 s client deadline that marks it as hung),
4. classifies every request as answered, clean error or lost, samples the circuits
   from ``/readyz`` while the load runs and reads ``/metrics`` at the end.

Lost must be 0 in every row, and wherever a healthy fallback exists answered must be
at least 99.9%; the exit code is 1 otherwise, so the run can serve as a check.

    .venv/bin/python bench/chaos.py                 # the whole matrix, about a minute
    .venv/bin/python bench/chaos.py --rows http500,slow_gaps --json

Loopback only; every child process is stopped when the run ends, fails or is interrupted.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_client import (
    CircuitWatch,
    attempts_summary,
    pct,
    plan,
    recover,
    run_load,
    subtract,
)
from chaos_env import (
    ANSWERED,
    ERROR,
    LOST,
    PRIMARY,
    SECONDARY,
    TERTIARY,
    FakeHost,
    Fault,
    Sidecar,
    bursts,
    log,
    mixed,
    partial,
    proc_cpu_s,
    proc_rss_mb,
    sidecar_env_overrides,
)

# ------------------------------------------------------------------ the fault matrix


@dataclass
class Row:
    id: str
    fault: str
    arm: Callable[[FakeHost, random.Random], None]
    fallback: bool = True  # a healthy deployment exists: answered must be >= 99.9%
    bypass: bool = True  # x-optiroute-cache: bypass
    distinct: int | None = None  # distinct prompts (None: every prompt unique)
    stop_primary_at: float | None = None  # share of requests after which the primary stops


def _always(index: int, fault: Fault) -> Callable[[FakeHost, random.Random], None]:
    return lambda host, rng: host.always(index, fault)


def _scripted(
    index: int, make: Callable[[random.Random], list[Fault]]
) -> Callable[[FakeHost, random.Random], None]:
    return lambda host, rng: host.script(index, make(rng))


def _all_failing(host: FakeHost, rng: random.Random) -> None:
    for index in range(len(host.ports)):
        host.always(index, Fault(status=500))


def _mixed_two(host: FakeHost, rng: random.Random) -> None:
    host.script(PRIMARY, mixed(rng, 0.3))
    host.script(SECONDARY, mixed(rng, 0.3))


def _chain_mid(host: FakeHost, rng: random.Random) -> None:
    # the stream breaks on primary and the deployment asked to continue it breaks too;
    # tertiary (big) stays healthy
    host.always(PRIMARY, Fault(reset_after_chunks=3))
    host.always(SECONDARY, Fault(mid_stream_error=True))


def _slow_continue(host: FakeHost, rng: random.Random) -> None:
    # healthy fallbacks that stream the way models do: the role chunk, then tokens
    # a little later, so a continuation's first read holds only the role chunk
    host.always(PRIMARY, Fault(reset_after_chunks=3))
    host.always(SECONDARY, Fault(chunk_delay_s=0.05))
    host.always(TERTIARY, Fault(chunk_delay_s=0.05))


ROWS = [
    Row("healthy", "no fault (control)", lambda host, rng: None),
    Row("http500", "500 on every call of primary", _always(PRIMARY, Fault(status=500))),
    Row(
        "http503_burst",
        "503 bursts on ~30% of primary calls",
        _scripted(PRIMARY, lambda rng: bursts(rng, Fault(status=503), 0.3)),
    ),
    Row(
        "http429",
        "429 + Retry-After: 1 on every primary call",
        _always(PRIMARY, Fault(status=429, headers={"Retry-After": "1"})),
    ),
    Row(
        "reset_before",
        "reset before response, ~30% of primary calls",
        _scripted(PRIMARY, lambda rng: partial(rng, Fault(reset_before=True), 0.3)),
    ),
    Row(
        "reset_mid",
        "reset after 3 SSE events, every primary stream",
        _always(PRIMARY, Fault(reset_after_chunks=3)),
    ),
    Row(
        "truncated",
        "stream ends cleanly after 3 events, no [DONE]",
        _always(PRIMARY, Fault(truncate_after_chunks=3)),
    ),
    Row(
        "slow_headers",
        "2 s before headers (> TTFT 0.5 s), ~30% of primary",
        _scripted(PRIMARY, lambda rng: partial(rng, Fault(delay_s=2.0), 0.3)),
    ),
    Row(
        "slow_gaps",
        "1.5 s between SSE events (> idle 1 s), every primary",
        _always(PRIMARY, Fault(chunk_delay_s=1.5)),
    ),
    Row(
        "bad_json",
        "200 with a body that is not JSON, every primary call",
        _always(PRIMARY, Fault(malformed_json=True)),
    ),
    Row(
        "bad_sse",
        "garbage data: event after the first, every primary",
        _always(PRIMARY, Fault(malformed_sse=True)),
    ),
    Row(
        "stream_error",
        "error event after 2 SSE events, every primary",
        _always(PRIMARY, Fault(mid_stream_error=True)),
    ),
    Row("chain_mid", "primary resets mid-stream, secondary errors mid-stream", _chain_mid),
    Row(
        "slow_continue",
        "primary resets mid-stream; the others pace events 50 ms apart",
        _slow_continue,
    ),
    Row(
        "port_closed",
        "primary stopped after 25% of requests (refused)",
        lambda host, rng: None,
        stop_primary_at=0.25,
    ),
    Row(
        "cache_503",
        "503 bursts ~30%, cache on, 8 prompts (single-flight)",
        _scripted(PRIMARY, lambda rng: bursts(rng, Fault(status=503), 0.3)),
        bypass=False,
        distinct=8,
    ),
    Row("mixed", "every kind, ~30% of primary and secondary calls", _mixed_two),
    Row(
        "all_down", "500 on every call of every backend (no fallback)", _all_failing, fallback=False
    ),
]


@dataclass
class RowResult:
    id: str
    fault: str
    fallback: bool
    requests: int
    answered: int
    errors: int
    lost: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    breaker: str
    circuits_final: dict[str, str]
    attempts: dict[str, dict[str, int]]
    answered_by: dict[str, int]
    error_reasons: dict[str, int]
    lost_reasons: dict[str, int]
    log_problems: list[str]
    sidecar_rss_mb: float
    sidecar_cpu_s: float
    sidecar_exit: int | None
    recovered_s: float | None
    recovery: str
    sidecar_stop_s: float
    seconds: float
    passed: bool = field(default=False)

    @property
    def answered_pct(self) -> float:
        return 100.0 * self.answered / self.requests if self.requests else 0.0

    def check(self, min_answered_pct: float, strict: bool = False) -> bool:
        self.passed = self.lost == 0 and (
            not self.fallback or self.answered_pct >= min_answered_pct
        )
        if strict and self.recovery != "ok" and not self.recovery.startswith("n/a"):
            self.passed = False
        return self.passed

    @property
    def recovered(self) -> str:
        if self.recovered_s is not None:
            return f"{self.recovered_s:.1f}s"
        return "n/a" if self.recovery.startswith("n/a") else "NO"


async def run_row(
    row: Row, host: FakeHost, workdir: Path, args: argparse.Namespace, extra_env: dict[str, str]
) -> RowResult:
    host.reset_all()
    started = time.monotonic()
    sidecar = Sidecar(workdir, host.ports, extra_env, row.id)
    try:
        # warm the sidecar up (imports, pools) on healthy backends, then arm the fault
        warm = await run_load(sidecar.url, plan(8, offset=10**6), 4, args.timeout)
        if any(o.kind != ANSWERED for o in warm):
            raise RuntimeError(f"warm-up failed: {[o.reason for o in warm]}")
        host.reset_all()
        row.arm(host, random.Random(f"{args.seed}:{row.id}"))
        cpu0 = proc_cpu_s(sidecar.pid)
        attempts0 = attempts_summary(sidecar.metrics())
        reqs = plan(args.requests, bypass=row.bypass, distinct=row.distinct)
        stop_at = None if row.stop_primary_at is None else int(len(reqs) * row.stop_primary_at)

        def on_dispatch(i: int) -> Any:
            if i == stop_at:
                return asyncio.to_thread(host.stop, PRIMARY)
            return None

        async with CircuitWatch(sidecar.port) as watch:
            outcomes = await run_load(
                sidecar.url, reqs, args.concurrency, args.timeout, on_dispatch
            )
        attempts = subtract(attempts_summary(sidecar.metrics()), attempts0)
        rss = proc_rss_mb(sidecar.pid)
        cpu = proc_cpu_s(sidecar.pid) - cpu0
        recovery: tuple[float | None, str] = (None, "n/a (primary's port is gone)")
        if row.stop_primary_at is None:
            recovery = await recover(sidecar, host, args)
    finally:
        stopping = time.monotonic()
        code = sidecar.stop()
        stop_s = time.monotonic() - stopping
        if row.stop_primary_at is not None:
            host.restart(PRIMARY)
    latencies = [o.latency_ms for o in outcomes]
    kinds = Counter(o.kind for o in outcomes)
    return RowResult(
        id=row.id,
        fault=row.fault,
        fallback=row.fallback,
        requests=len(outcomes),
        answered=kinds[ANSWERED],
        errors=kinds[ERROR],
        lost=kinds[LOST],
        p50_ms=pct(latencies, 50),
        p99_ms=pct(latencies, 99),
        max_ms=max(latencies, default=float("nan")),
        breaker=watch.summary(),
        circuits_final=watch.final,
        attempts=attempts,
        recovered_s=recovery[0],
        recovery=recovery[1],
        answered_by=dict(Counter(o.backend for o in outcomes if o.kind == ANSWERED)),
        error_reasons=dict(Counter(o.reason for o in outcomes if o.kind == ERROR)),
        lost_reasons=dict(Counter(o.reason for o in outcomes if o.kind == LOST)),
        log_problems=sidecar.log_problems(),
        sidecar_rss_mb=rss,
        sidecar_cpu_s=cpu,
        sidecar_exit=code,
        sidecar_stop_s=stop_s,
        seconds=time.monotonic() - started,
    )


# ------------------------------------------------------------------ output


def table(results: list[RowResult]) -> str:
    head = [
        "fault",
        "requests",
        "answered",
        "answered%",
        "clean_errors",
        "lost",
        "p50_ms",
        "p99_ms",
        "recovered",
        "check",
        "breaker",
    ]
    rows = [
        [
            r.id,
            str(r.requests),
            str(r.answered),
            f"{r.answered_pct:.1f}",
            str(r.errors),
            str(r.lost),
            f"{r.p50_ms:.0f}",
            f"{r.p99_ms:.0f}",
            r.recovered,
            "ok" if r.passed else "FAIL",
            r.breaker,
        ]
        for r in results
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    widths[-1] = 0  # the last column is left ragged

    def line(cells: list[str]) -> str:
        out = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            out.append(cell.ljust(width) if i in (0, len(cells) - 1) else cell.rjust(width))
        return "  ".join(out).rstrip()

    return "\n".join(
        [line(head), line(["-" * w for w in widths[:-1]] + ["-------"])] + [line(r) for r in rows]
    )


def details(results: list[RowResult]) -> str:
    out = []
    for r in results:
        attempts = "; ".join(
            f"{backend} " + " ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
            for backend, outcomes in sorted(r.attempts.items())
        )
        by = " ".join(f"{k}={v}" for k, v in sorted(r.answered_by.items())) or "-"
        out.append(
            f"{r.id}: {r.fault}; {r.seconds:.1f}s; sidecar {r.sidecar_cpu_s:.1f} cpu-s, "
            f"{r.sidecar_rss_mb:.0f} MB, stopped in {r.sidecar_stop_s:.1f}s "
            f"(exit {r.sidecar_exit})"
        )
        out.append(f"    answered by: {by}")
        out.append(f"    backend attempts: {attempts or '-'}")
        if r.error_reasons:
            out.append(
                "    clean errors: "
                + ", ".join(f"{k} x{v}" for k, v in sorted(r.error_reasons.items()))
            )
        if r.lost_reasons:
            out.append(
                "    LOST: " + ", ".join(f"{k} x{v}" for k, v in sorted(r.lost_reasons.items()))
            )
        if r.recovery != "ok":
            out.append(f"    recovery: {r.recovery}")
        if r.log_problems:
            out.append(
                f"    sidecar log: {len(r.log_problems)} error line(s), first: "
                f"{r.log_problems[0][:300]}"
            )
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per row (200)")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop workers (16)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="client deadline per request; reaching it counts as lost (15)",
    )
    parser.add_argument("--rows", default="", help="comma-separated row ids (default: all)")
    parser.add_argument("--seed", default="1", help="seed of the scripted fault mixes")
    parser.add_argument(
        "--min-answered",
        type=float,
        default=99.9,
        help="answered%% required where a healthy fallback exists (99.9)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OPTIROUTE_X=V",
        help="extra sidecar setting (repeatable), e.g. OPTIROUTE_BREAKER_COOLDOWN_S=30",
    )
    parser.add_argument(
        "--recovery-s",
        type=float,
        default=5.0,
        help="after each row's load the faults are cleared; how long the "
        "primary may take to answer again (5)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="also fail a row whose primary did not come back in time",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per row at the end")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (sidecar and fake-backend logs)"
    )
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    args = parser.parse_args(argv)
    known = {r.id for r in ROWS}
    args.row_ids = [x for x in args.rows.split(",") if x] or [r.id for r in ROWS]
    unknown = set(args.row_ids) - known
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; known: {', '.join(r.id for r in ROWS)}")
    return args


def run(args: argparse.Namespace) -> list[RowResult]:
    extra_env = sidecar_env_overrides(args.set)
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="optiroute-chaos-"))
    host = FakeHost(3, workdir / "fakes.log")
    try:
        for row in ROWS:
            if row.id not in args.row_ids:
                continue
            result = asyncio.run(run_row(row, host, workdir, args, extra_env))
            result.check(args.min_answered, args.strict)
            log(
                f"{row.id:14} {result.requests} req, {result.answered} answered, "
                f"{result.errors} errors, {result.lost} lost, p99 {result.p99_ms:.0f} ms, "
                f"{result.seconds:.1f}s"
            )
            results.append(result)
    finally:
        host.close()
        if args.keep:
            log(f"logs and registries kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for row in ROWS:
            print(f"{row.id:14} {row.fault}")
        return 0

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    started = time.monotonic()
    try:
        results = run(args)
    except KeyboardInterrupt:
        log("interrupted; children stopped")
        return 130
    print(table(results))
    print()
    print(details(results))
    print()
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"{args.requests} requests per row (half SSE), concurrency {args.concurrency}, "
        f"client deadline {args.timeout:g} s, seed {args.seed}; run took "
        f"{time.monotonic() - started:.0f}s; load average {' '.join(load)}"
    )
    failed = [r.id for r in results if not r.passed]
    print(
        "check: "
        + (
            f"FAILED rows: {', '.join(failed)}"
            if failed
            else f"lost = 0 everywhere, answered >= {args.min_answered:g}% "
            "wherever a healthy fallback exists"
        )
    )
    if args.json:
        for r in results:
            doc = dict(vars(r))
            doc["answered_pct"] = r.answered_pct
            doc["log_problems"] = {"count": len(r.log_problems), "first": r.log_problems[:3]}
            print(json.dumps(doc, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
