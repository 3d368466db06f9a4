"""Many slow streams at once: does the sidecar keep every stream flowing?

One run:

1. starts ``bench/mock_upstream.py`` in slow-stream mode (``--chunks`` content chunks,
   ``--interval-ms`` apart), pinned to the second core,
2. opens ``--streams`` (1000) concurrent streams straight to the mock: the baseline,
3. starts ``optiroute-mw serve`` pinned to the first core, with the registry and
   settings of ``bench/overhead.py`` (semantic cache off, rule router, no local
   model), and opens the same streams through it while sampling its RSS,
4. prints a table (and with ``--json`` one JSON object per target).

The client is an asyncio + aiohttp process pinned to the mock's core.  Every stream
is a ``POST /v1/chat/completions`` with ``stream: true`` and a unique prompt (a cache
miss).  Per stream it records the time to the first content chunk, every gap between
content chunks, whether ``data: [DONE]`` arrived, and any error.  Nothing is
asserted; it prints numbers.  Every phase has a timeout and every child is stopped
when the run ends, fails or is interrupted.

    .venv/bin/python bench/streams.py                      # 1000 streams, 20 x 200 ms
    .venv/bin/python bench/streams.py --streams 200 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overhead import (
    MOCK,
    MODEL,
    REGISTRY,
    ROOT,
    STOP_SIGNALS,
    children_cpu_s,
    core_busy_s,
    free_port,
    loadavg,
    log,
    pct,
    proc_cpu_s,
    proc_mem_mb,
    sidecar_env,
    start,
    stop,
    stop_all,
    wait_ready,
)

PATH = "/v1/chat/completions"

# ---------------------------------------------------------------- the load generator (child)


async def _one_stream(
    session: Any, url: str, body: bytes, delay: float, origin: float
) -> dict[str, Any]:
    """One stream: its start (ms after ``origin``), TTFT (first non-empty content), the
    gaps between content chunks (ms), [DONE] or the error."""
    await asyncio.sleep(delay)
    t0 = time.perf_counter()
    last = t0
    rec: dict[str, Any] = {"start": round((t0 - origin) * 1000, 2), "status": None, "ttft": None}
    rec.update({"gaps": [], "chunks": 0, "done": False})
    try:
        async with session.post(url, data=body) as resp:
            rec["status"] = resp.status
            if resp.status != 200:
                rec["error"] = f"HTTP {resp.status}"
                return rec
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:].strip()
                if payload == b"[DONE]":
                    rec["done"] = True
                    break
                event = json.loads(payload)
                if "error" in event:
                    rec["error"] = "error event"
                    continue
                choices = event.get("choices") or [{}]
                if not choices[0].get("delta", {}).get("content"):
                    continue  # role, finish and usage chunks
                now = time.perf_counter()
                if rec["chunks"] == 0:
                    rec["ttft"] = round((now - t0) * 1000, 2)
                else:
                    rec["gaps"].append(round((now - last) * 1000, 2))
                rec["chunks"] += 1
                last = now
    except Exception as exc:  # any failure is a data point, not a crash
        rec["error"] = type(exc).__name__
    return rec


async def _load(cfg: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    n = cfg["streams"]
    headers = {"content-type": "application/json"}
    # limit=0: one connection per stream, as many as there are streams
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=cfg["timeout_s"], sock_connect=10)

    def body(i: int) -> bytes:
        prompt = f"Tell me a long story, stream {cfg['nonce']}-{i}."
        msg = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": prompt}]}
        return json.dumps(msg).encode()

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers, skip_auto_headers=("User-Agent",)
    ) as session:
        t0 = time.perf_counter()
        url, ramp = cfg["url"], cfg["ramp_s"]
        tasks = [_one_stream(session, url, body(i), ramp * i / n, t0) for i in range(n)]
        records = await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    return {"records": records, "wall_s": wall}


def loadgen_main(spec: str) -> int:
    cfg = json.loads(spec)
    try:
        import uvloop

        result = uvloop.run(_load(cfg))
    except ImportError:
        result = asyncio.run(_load(cfg))
    # a file, not stdout: the records of 1000 streams are far more than a pipe holds
    Path(cfg["out"]).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------- sampling the target


class Sampler(threading.Thread):
    """Samples a process's VmRSS, open fds and CPU time every ``period`` seconds until
    stopped."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.period = period
        self.halt = threading.Event()
        self.rss_peak = 0.0
        self.fds_peak = 0
        self.cpu: list[tuple[float, float]] = []  # (monotonic s, CPU s)

    def run(self) -> None:
        while not self.halt.is_set():
            with contextlib.suppress(OSError):
                self.rss_peak = max(self.rss_peak, proc_mem_mb(self.pid)[0])
                self.fds_peak = max(self.fds_peak, len(os.listdir(f"/proc/{self.pid}/fd")))
                self.cpu.append((time.monotonic(), proc_cpu_s(self.pid)))
            self.halt.wait(self.period)

    def cpu_peak_pct(self, window: float = 0.5) -> float:
        """The busiest ``window`` seconds, in % of one core: a burst that saturates the
        core shows here even when the average over the run is low."""
        peak, j = 0.0, 0
        for t0, c0 in self.cpu:
            while j < len(self.cpu) and self.cpu[j][0] - t0 < window:
                j += 1
            if j == len(self.cpu):
                break
            t1, c1 = self.cpu[j]
            peak = max(peak, 100 * (c1 - c0) / (t1 - t0))
        return peak

    def finish(self) -> None:
        self.halt.set()
        self.join(5)


def run_loadgen(args: argparse.Namespace, port: int, cpu: int | None) -> dict[str, Any]:
    out_path = args.workdir / f"streams-{port}-{time.time_ns()}.json"
    spec = {
        "out": str(out_path),
        "url": f"http://127.0.0.1:{port}{PATH}",
        "streams": args.streams,
        "ramp_s": args.ramp_s,
        "timeout_s": args.timeout_s,
        "nonce": f"{os.getpid()}x{port}x{time.time_ns() % 10**9}",
    }
    cmd = [sys.executable, str(Path(__file__).resolve()), "--loadgen", json.dumps(spec)]
    proc = start(cmd, cpu=cpu, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=args.timeout_s + 30)
    finally:
        stop(proc, grace=2.0)
    if proc.returncode != 0 or not out_path.exists():
        raise RuntimeError(f"load generator failed (code {proc.returncode}): {err[-2000:]!r}")
    result: dict[str, Any] = json.loads(out_path.read_text())
    if not args.keep:
        out_path.unlink()
    return result


@dataclass
class Setup:
    """The cores (None: not pinned) and the mock's pid, shared by every measurement."""

    sut_cpu: int | None
    gen_cpu: int | None
    mock_pid: int


def cpu_times(pid: int, mock_pid: int) -> tuple[dict[int, float], float, float, float]:
    return core_busy_s(), proc_cpu_s(pid), proc_cpu_s(mock_pid), children_cpu_s()


def other_work(
    setup: Setup, wall: float, before: tuple[Any, ...], after: tuple[Any, ...], sidecar: bool
) -> dict[str, float | None]:
    """Busy % of the two cores that was neither the sidecar nor the mock + generator:
    other work on the machine competing for the cores (noise)."""
    busy0, target0, mock0, gen0 = before
    busy1, target1, mock1, gen1 = after
    ours = {
        setup.sut_cpu: (target1 - target0) if sidecar else 0.0,
        setup.gen_cpu: (mock1 - mock0) + (gen1 - gen0),
    }
    out: dict[str, float | None] = {}
    for name, core in (
        ("other_sut_core_pct", setup.sut_cpu),
        ("other_gen_core_pct", setup.gen_cpu),
    ):
        busy = None if core is None else busy1[core] - busy0[core] - ours[core]
        out[name] = None if busy is None else round(max(0.0, 100 * busy / wall), 1)
    out["gen_cpu_pct"] = round(100 * (gen1 - gen0) / wall, 1)
    out["mock_cpu_pct"] = round(100 * (mock1 - mock0) / wall, 1)
    return out


def measure(args: argparse.Namespace, port: int, pid: int, setup: Setup) -> dict[str, Any]:
    """The streams against one target, with the target's memory, fds and CPU around them."""
    rss_before = proc_mem_mb(pid)[0]
    before = cpu_times(pid, setup.mock_pid)
    sampler = Sampler(pid)
    sampler.start()
    t0 = time.perf_counter()
    try:
        result = run_loadgen(args, port, setup.gen_cpu)
    finally:
        sampler.finish()
    wall = time.perf_counter() - t0
    after = cpu_times(pid, setup.mock_pid)
    time.sleep(args.settle_s)  # let closed connections and their buffers be released
    rss_after, rss_hwm = proc_mem_mb(pid)
    summary = summarise(result["records"], args)
    summary.update(
        {
            "wall_s": round(result["wall_s"], 3),
            "rss_before_mb": round(rss_before, 1),
            "rss_peak_mb": round(max(sampler.rss_peak, rss_before), 1),
            "rss_after_mb": round(rss_after, 1),
            "rss_hwm_mb": round(rss_hwm, 1),
            "fds_peak": sampler.fds_peak,
            "cpu_pct": round(100 * (after[1] - before[1]) / wall, 1),
            "cpu_peak_pct": round(sampler.cpu_peak_pct(), 1),
            "loadavg_1m": loadavg()[0],
            **other_work(setup, wall, before, after, sidecar=pid != setup.mock_pid),
        }
    )
    return summary


def summarise(records: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    limit = args.interval_ms + args.stall_ms
    ttfts = sorted(r["ttft"] for r in records if r["ttft"] is not None)
    gaps = [g for r in records for g in r["gaps"]]
    problems: Counter[str] = Counter()
    for r in records:
        if r.get("error"):
            problems[r["error"]] += 1
        elif not r["done"]:
            problems["no [DONE]"] += 1
        elif r["chunks"] != args.chunks:
            problems[f"{r['chunks']} chunks"] += 1
    completed = sum(1 for r in records if r["done"])
    stall_at = sorted(stall_times(records, limit))
    return {
        "streams": len(records),
        "opened": sum(1 for r in records if r["status"] == 200),
        "completed": completed,
        "failed": len(records) - completed,
        "problems": dict(problems),
        "ttft_p50_ms": pct(ttfts, 50),
        "ttft_p99_ms": pct(ttfts, 99),
        "ttft_max_ms": ttfts[-1] if ttfts else -1.0,
        "gaps": len(gaps),
        "gap_p99_ms": pct(sorted(gaps), 99),
        "max_gap_ms": max(gaps, default=-1.0),
        "stalls": sum(1 for g in gaps if g > limit),
        "streams_stalled": sum(1 for r in records if any(g > limit for g in r["gaps"])),
        "stalls_from_s": round(stall_at[0] / 1000, 2) if stall_at else None,
        "stalls_to_s": round(stall_at[-1] / 1000, 2) if stall_at else None,
    }


def stall_times(records: list[dict[str, Any]], limit: float) -> list[float]:
    """When each stall ended, in ms after the load started."""
    out = []
    for r in records:
        if r["ttft"] is None:
            continue
        at = r["start"] + r["ttft"]
        for gap in r["gaps"]:
            at += gap
            if gap > limit:
                out.append(at)
    return out


# ---------------------------------------------------------------- the run


def raise_nofile(streams: int) -> None:
    """Two sockets per stream in the sidecar (client side and upstream side), inherited
    by every child."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 4 * streams + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 2 * streams + 256:
        log(f"warning: RLIMIT_NOFILE hard limit {hard} is low for {streams} streams")


def start_sidecar(
    args: argparse.Namespace, config: Path, log_path: Path, cpu: int | None
) -> tuple[subprocess.Popen[Any], int]:
    port = free_port()
    env = sidecar_env(config, port, args.engine)
    env.update(args.set)
    cmd = [sys.executable, "-m", "optiroute_mw.cli", "serve"]
    with open(log_path, "wb") as log_file:
        proc = start(cmd, cpu=cpu, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    wait_ready(port, "/healthz", proc, "the sidecar")
    return proc, port


def log_levels(log_path: Path) -> tuple[Counter[str], list[str]]:
    """Counts of the sidecar's log lines by level, and a few warning/error messages."""
    levels: Counter[str] = Counter()
    samples: list[str] = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            level = str(json.loads(line).get("level", "?"))
        except (ValueError, AttributeError):
            level = "text"
        levels[level] += 1
        if level in ("warning", "error", "critical", "text") and len(samples) < 5:
            samples.append(line[:300])
    return levels, samples


def rounds(
    args: argparse.Namespace, target: str, port: int, pid: int, setup: Setup
) -> list[dict[str, Any]]:
    """``--rounds`` loads, one after the other, against one process: memory that is
    kept across rounds shows as a rising ``before``."""
    rows = []
    for n in range(1, args.rounds + 1):
        log(f"{target}: round {n}/{args.rounds}, {args.streams} streams")
        rows.append({"target": target, "round": n, **measure(args, port, pid, setup)})
    return rows


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    cpus = sorted(os.sched_getaffinity(0))
    sut_cpu = cpus[0] if len(cpus) > 1 else None
    gen_cpu = cpus[1] if len(cpus) > 1 else None
    raise_nofile(args.streams)
    results: list[dict[str, Any]] = []
    workdir = args.workdir = Path(tempfile.mkdtemp(prefix="optiroute-streams-"))
    try:
        mock_port = free_port()
        mock_cmd = [sys.executable, str(MOCK), "--port", str(mock_port)]
        mock_cmd += ["--stream-chunks", str(args.chunks)]
        mock_cmd += ["--stream-interval-ms", str(args.interval_ms)]
        mock = start(mock_cmd, cpu=gen_cpu, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(mock_port, "/healthz", mock, "the mock upstream")
        setup = Setup(sut_cpu, gen_cpu, mock.pid)
        if "direct" in args.targets:
            results += rounds(args, "direct", mock_port, mock.pid, setup)
        if "sidecar" in args.targets:
            config = workdir / "registry.yaml"
            config.write_text(REGISTRY.format(port=mock_port))
            log_path = workdir / "sidecar.log"
            try:
                sidecar, port = start_sidecar(args, config, log_path, sut_cpu)
                results += rounds(args, f"sidecar-{args.engine}", port, sidecar.pid, setup)
            except Exception:
                log(f"sidecar log (tail):\n{log_path.read_text(errors='replace')[-3000:]}")
                raise
            stop(sidecar)
            levels, samples = log_levels(log_path)
            results[-1].update({"log_levels": dict(levels), "log_samples": samples})
        stop(mock)
    finally:
        stop_all()
        if args.keep:
            log(f"kept {workdir}: the per-stream records and the sidecar's log")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


# ---------------------------------------------------------------- output

COLUMNS = [
    ("target", 16),
    ("rnd", 3),
    ("streams", 7),
    ("opened", 6),
    ("done", 5),
    ("failed", 6),
    ("ttft_p50", 8),
    ("ttft_p99", 8),
    ("ttft_max", 8),
    ("stalls", 6),
    ("max_gap", 7),
    ("rss_MB before/peak/after", 24),
    ("fds", 5),
    ("cpu% avg/peak", 13),
    ("oth0/1%", 7),
    ("load", 4),
    ("wall_s", 6),
]


def fmt(value: float | None) -> str:
    """Rounded to whole units; "-" for none (pct() gives -1 for an empty list)."""
    return "-" if value is None or value < 0 else f"{value:.0f}"


def row_cells(r: dict[str, Any]) -> list[str]:
    rss = f"{r['rss_before_mb']:.1f}/{r['rss_peak_mb']:.1f}/{r['rss_after_mb']:.1f}"
    return [
        r["target"],
        str(r["round"]),
        str(r["streams"]),
        str(r["opened"]),
        str(r["completed"]),
        str(r["failed"]),
        fmt(r["ttft_p50_ms"]),
        fmt(r["ttft_p99_ms"]),
        fmt(r["ttft_max_ms"]),
        str(r["stalls"]),
        fmt(r["max_gap_ms"]),
        rss,
        str(r["fds_peak"]),
        f"{r['cpu_pct']:.0f}/{r['cpu_peak_pct']:.0f}",
        f"{fmt(r['other_sut_core_pct'])}/{fmt(r['other_gen_core_pct'])}",
        f"{r['loadavg_1m']:.1f}",
        f"{r['wall_s']:.1f}",
    ]


def table(results: list[dict[str, Any]]) -> str:
    widths = [w for _, w in COLUMNS]
    lines = ["  ".join(f"{name:>{w}}" for name, w in COLUMNS)]
    lines.append("  ".join("-" * w for w in widths))
    for r in results:
        cells = row_cells(r)
        lines.append("  ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    for r in results:
        name = f"{r['target']} round {r['round']}"
        if r["problems"]:
            lines.append(f"{name}: failures {r['problems']}")
        if r["stalls"]:
            lines.append(
                f"{name}: {r['stalls']} stalls in {r['streams_stalled']} streams, "
                f"{r['stalls_from_s']}..{r['stalls_to_s']} s after the start; "
                f"gap p99 {r['gap_p99_ms']:.0f} ms"
            )
        if r.get("log_levels"):
            lines.append(f"{r['target']}: sidecar log lines by level {r['log_levels']}")
        for sample in r.get("log_samples", []):
            lines.append(f"  {sample}")
    return "\n".join(lines)


# ---------------------------------------------------------------- entry point


def setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("OPTIROUTE_"):
        raise argparse.ArgumentTypeError(f"{text!r} is not OPTIROUTE_NAME=VALUE")
    return name, value


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams (1000)")
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream (20)")
    parser.add_argument(
        "--interval-ms", type=float, default=200.0, help="mock's gap between chunks (200)"
    )
    parser.add_argument(
        "--stall-ms",
        type=float,
        default=100.0,
        help="a gap longer than the interval by more than this is a stall (100)",
    )
    parser.add_argument(
        "--ramp-s", type=float, default=0.0, help="spread the stream starts over S seconds (0)"
    )
    parser.add_argument(
        "--timeout-s", type=float, help="per-target load limit (default: 3x the script + 30 s)"
    )
    parser.add_argument(
        "--settle-s", type=float, default=1.0, help="wait before the 'after' RSS sample (1)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="loads in a row against each target (1)"
    )
    parser.add_argument("--engine", choices=["aiohttp", "httpx"], default="aiohttp")
    parser.add_argument(
        "--targets",
        type=lambda s: s.split(","),
        default=["direct", "sidecar"],
        help="comma list of direct,sidecar",
    )
    extra = "an extra sidecar setting OPTIROUTE_X=V (repeatable)"
    parser.add_argument("--set", type=setting, action="append", default=[], help=extra)
    parser.add_argument("--json", action="store_true", help="also one JSON object per target")
    parser.add_argument(
        "--keep", action="store_true", help="keep the per-stream records and the sidecar log"
    )
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loadgen:
        return args
    if args.streams < 1 or args.chunks < 2 or args.rounds < 1:
        parser.error("--streams and --rounds must be at least 1, --chunks at least 2")
    if not set(args.targets) <= {"direct", "sidecar"}:
        parser.error(f"--targets: unknown target in {args.targets}")
    args.set = dict(args.set)
    if args.timeout_s is None:
        args.timeout_s = args.ramp_s + 3 * args.chunks * args.interval_ms / 1000 + 30
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loadgen:
        return loadgen_main(args.loadgen)
    for sig in STOP_SIGNALS:  # the run's finally-blocks stop the children
        signal.signal(sig, _interrupted)
    started = time.monotonic()
    try:
        results = run(args)
    except KeyboardInterrupt:
        log("interrupted: the mock, the sidecar and the generator are stopped")
        return 130
    except RuntimeError as exc:  # a child failed; it is stopped, its message is enough
        log(f"error: {exc}")
        return 1
    print(table(results))
    print()
    print(
        f"{args.streams} streams x {args.chunks} chunks {args.interval_ms:g} ms apart "
        f"(scripted TTFT {args.interval_ms:g} ms, stream {args.chunks * args.interval_ms:g} ms); "
        f"ramp {args.ramp_s:g} s; stall = gap > {args.interval_ms + args.stall_ms:g} ms; "
        f"times in ms; run took {time.monotonic() - started:.0f} s"
    )
    print(
        "rss/fds/cpu: of the target process (the mock on direct rows); oth0/1: busy % of "
        "core 0 / 1 that was other work (noise); sidecar settings added: "
        + (" ".join(f"{k}={v}" for k, v in args.set.items()) or "none")
    )
    if args.json:
        for r in results:
            print(json.dumps(r, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
