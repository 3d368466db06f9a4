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
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.fake_openai import Fault  # noqa: E402  (test-suite code reused here)

PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PRIMARY, SECONDARY, TERTIARY = range(3)
MODEL = "big"  # what every request names: the ceiling, so "small" may answer too

# The same two models on several backends.  Registry order (cheapest first, then this
# file's order) makes the primary backend the first candidate of every request:
#   simple prompt:  small@primary, small@secondary, big@primary, big@secondary, big@tertiary
#   complex prompt: big@primary, big@secondary, big@tertiary, then the small ones
REGISTRY = """\
replace_defaults: true
backends:
  - {{name: primary, base_url: "http://127.0.0.1:{0}/v1"}}
  - {{name: secondary, base_url: "http://127.0.0.1:{1}/v1"}}
  - {{name: tertiary, base_url: "http://127.0.0.1:{2}/v1"}}
models:
  - {{name: small, upstream: small-up, backend: primary, tier: simple,
     input_per_mtok: 0.1, output_per_mtok: 0.4, quality: 0.3}}
  - {{name: small, upstream: small-up, backend: secondary, tier: simple,
     input_per_mtok: 0.1, output_per_mtok: 0.4, quality: 0.3}}
  - {{name: big, upstream: big-up, backend: primary, tier: complex,
     input_per_mtok: 2.5, output_per_mtok: 10, quality: 0.9, context_window: 128000}}
  - {{name: big, upstream: big-up, backend: secondary, tier: complex,
     input_per_mtok: 2.5, output_per_mtok: 10, quality: 0.9, context_window: 128000}}
  - {{name: big, upstream: big-up, backend: tertiary, tier: complex,
     input_per_mtok: 2.5, output_per_mtok: 10, quality: 0.9, context_window: 128000}}
"""

# Short timeouts so that a row takes seconds; the client's own deadline (15 s) is well
# above the sidecar's total deadline, so a request that reaches it is hung, not slow.
SIDECAR_ENV = {
    "OPTIROUTE_LOCAL_MODEL": "off",
    "OPTIROUTE_LOG_LEVEL": "warning",
    "OPTIROUTE_LOG_FORMAT": "json",
    "OPTIROUTE_CONNECT_TIMEOUT_S": "1",
    "OPTIROUTE_READ_TIMEOUT_S": "1",
    "OPTIROUTE_TTFT_TIMEOUT_S": "0.5",
    "OPTIROUTE_TOTAL_TIMEOUT_S": "10",
    "OPTIROUTE_RETRY_BACKOFF_S": "0.05",
    "OPTIROUTE_RETRY_BACKOFF_MAX_S": "0.5",
    "OPTIROUTE_RETRY_AFTER_MAX_S": "2",
    "OPTIROUTE_BREAKER_COOLDOWN_S": "1",
    "OPTIROUTE_SHUTDOWN_GRACE_S": "2",
}

SIMPLE = "What is the capital of France? (request {n})"
HARD = (
    "Design a distributed rate limiter for a microservices architecture; explain the "
    "trade-offs between token bucket and sliding window, then write Python code for it. "
    "(request {n})"
)

ANSWERED, ERROR, LOST = "answered", "error", "lost"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ fake backends


def fake_host(conn: Connection, count: int, log_path: str | None) -> None:
    """Child process: serve ``count`` fake backends and obey (op, index, arg) commands."""
    from support.fake_openai import FakeOpenAI

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    if log_path:
        # uvicorn reports every request a fault cut short; keep that out of the table
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    fakes = [FakeOpenAI(models=("small-up", "big-up")).start() for _ in range(count)]
    conn.send([f.port for f in fakes])
    try:
        while True:
            try:
                op, index, arg = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            if op == "quit":
                conn.send(("ok", None))
                return
            fake = fakes[index]
            try:
                out: Any = None
                if op == "always":
                    fake.always(arg)
                elif op == "script":
                    fake.script(*arg)
                elif op == "reset":
                    fake.reset()
                elif op == "hits":
                    out = fake.hits
                elif op == "stop":
                    fake.stop()
                elif op == "restart":
                    fake.stop()
                    fake.start()
                    out = fake.port
                else:
                    raise ValueError(f"unknown op {op!r}")
                conn.send(("ok", out))
            except Exception as exc:
                conn.send(("error", repr(exc)))
    finally:
        for fake in fakes:
            with contextlib.suppress(Exception):
                fake.stop()


class FakeHost:
    """The parent's handle on the fake backends' process."""

    def __init__(self, count: int = 3, log_path: Path | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=fake_host, args=(child, count, str(log_path or "")), daemon=True
        )
        self.proc.start()
        child.close()
        if not self.conn.poll(30):
            self.close()
            raise RuntimeError("the fake backends did not start")
        self.ports: list[int] = self.conn.recv()

    def call(self, op: str, index: int = 0, arg: Any = None) -> Any:
        self.conn.send((op, index, arg))
        if not self.conn.poll(30):
            raise RuntimeError(f"the fake backends did not answer {op!r}")
        status, out = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"fake backend {op!r} failed: {out}")
        return out

    def always(self, index: int, fault: Fault | None) -> None:
        self.call("always", index, fault)

    def script(self, index: int, faults: Iterable[Fault]) -> None:
        self.call("script", index, list(faults))

    def hits(self, index: int) -> int:
        return int(self.call("hits", index))

    def reset_all(self) -> None:
        for index in range(len(self.ports)):
            self.call("reset", index)

    def stop(self, index: int) -> None:
        self.call("stop", index)

    def restart(self, index: int) -> None:
        self.ports[index] = int(self.call("restart", index))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.is_alive():
                self.conn.send(("quit", 0, None))
                self.conn.poll(10)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


def partial(rng: random.Random, fault: Fault, share: float, n: int = 4000) -> list[Fault]:
    """A seeded script: ``fault`` on about ``share`` of calls, normal answers otherwise."""
    normal = Fault()
    return [fault if rng.random() < share else normal for _ in range(n)]


def bursts(rng: random.Random, fault: Fault, share: float, mean_burst: float = 3.0,
           n: int = 4000) -> list[Fault]:
    """Faults in runs (mean length ``mean_burst``) covering about ``share`` of calls."""
    leave = 1.0 / mean_burst
    enter = leave * share / (1.0 - share)  # stationary share of the faulty state
    out: list[Fault] = []
    faulty = False
    normal = Fault()
    for _ in range(n):
        faulty = rng.random() >= leave if faulty else rng.random() < enter
        out.append(fault if faulty else normal)
    return out


def mixed(rng: random.Random, share: float, n: int = 4000) -> list[Fault]:
    """Every fault kind, drawn at random, on about ``share`` of calls."""
    kinds = [
        Fault(status=500),
        Fault(status=503),
        Fault(status=429, headers={"Retry-After": "1"}),
        Fault(reset_before=True),
        Fault(reset_after_chunks=3),
        Fault(truncate_after_chunks=3),
        Fault(delay_s=2.0),
        Fault(chunk_delay_s=1.5),
        Fault(malformed_json=True),
        Fault(malformed_sse=True),
        Fault(mid_stream_error=True),
    ]
    normal = Fault()
    return [rng.choice(kinds) if rng.random() < share else normal for _ in range(n)]


# ------------------------------------------------------------------ the sidecar


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_cpu_s(pid: int) -> float:
    data = Path(f"/proc/{pid}/stat").read_text()
    rest = data[data.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Sidecar:
    """``python -m optiroute_mw.cli serve`` in its own session, logs to a file."""

    def __init__(self, workdir: Path, ports: list[int], extra_env: dict[str, str],
                 tag: str) -> None:
        self.port = free_port()
        config = workdir / f"registry-{tag}.yaml"
        config.write_text(REGISTRY.format(*ports))
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIROUTE_")}
        env.update(SIDECAR_ENV)
        env.update(extra_env)
        env.update(
            {
                "OPTIROUTE_CONFIG": str(config),
                "OPTIROUTE_HOST": "127.0.0.1",
                "OPTIROUTE_PORT": str(self.port),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.log_path = workdir / f"sidecar-{tag}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "optiroute_mw.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, deadline_s: float = 30.0) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the sidecar exited with code {self.proc.returncode}: "
                    f"{self.log_path.read_text()[-2000:]}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                if http_get(self.port, "/readyz", 1.0)[0] == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the sidecar was not ready after {deadline_s:.0f}s")

    def metrics(self) -> str:
        return http_get(self.port, "/metrics")[1].decode()

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a grace; the exit code (None when it was killed)."""
        code: int | None = None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(5)
        else:
            code = self.proc.returncode
        self._log.close()
        return code

    def log_problems(self) -> list[str]:
        """Log lines at error level or above, and tracebacks."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            level = ""
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                level = str(doc.get("level", "")) if isinstance(doc, dict) else ""
            if level in ("error", "critical", "exception") or line.startswith("Traceback"):
                out.append(line)
        return out


def sidecar_env_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("OPTIROUTE_"):
            raise SystemExit(f"--set wants OPTIROUTE_NAME=VALUE, not {item!r}")
        out[name] = value
    return out


# ------------------------------------------------------------------ the client side


@dataclass(frozen=True)
class Req:
    n: int
    stream: bool
    prompt: str
    bypass: bool = True


@dataclass
class Outcome:
    kind: str  # answered, error, lost
    reason: str
    latency_ms: float
    status: int = 0
    backend: str = "-"


def plan(count: int, *, bypass: bool = True, distinct: int | None = None,
         offset: int = 0) -> list[Req]:
    """Half JSON, half SSE; half simple, half complex prompts; unique unless ``distinct``."""
    out = []
    for i in range(offset, offset + count):
        key = i if distinct is None else i % distinct
        stream = i % 2 == 1
        template = HARD if (key // 2) % 2 else SIMPLE
        out.append(Req(i, stream, template.format(n=key), bypass))
    return out


def _is_error(doc: Any) -> bool:
    error = doc.get("error") if isinstance(doc, dict) else None
    return isinstance(error, dict) and isinstance(error.get("message"), str)


def _error_code(doc: dict[str, Any]) -> str:
    return str(doc["error"].get("code") or doc["error"].get("type") or "?")


def classify_json(status: int, body: bytes) -> tuple[str, str]:
    try:
        doc = json.loads(body)
    except ValueError:
        return LOST, f"http_{status}: body is not JSON"
    if status == 200:
        try:
            choice = doc["choices"][0]
            content = choice["message"]["content"]
            finished = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError):
            return LOST, "200 without a completion"
        if not isinstance(content, str) or not content.startswith("echo: ") or not finished:
            return LOST, "200 with an incomplete or wrong answer"
        return ANSWERED, "ok"
    if status >= 400 and _is_error(doc):
        return ERROR, f"{status} {_error_code(doc)}"
    return LOST, f"http_{status}: not an OpenAI-style error"


def classify_stream(status: int, content_type: str, body: bytes) -> tuple[str, str]:
    if status != 200:
        return classify_json(status, body)
    if "text/event-stream" not in content_type:
        return LOST, f"200 with content-type {content_type or '-'}"
    try:
        text = body.decode().replace("\r\n", "\n")
    except UnicodeDecodeError:
        return LOST, "stream is not UTF-8"
    if not text.endswith("\n\n"):
        return LOST, "stream ends inside an event"
    datas = []
    for event in text.split("\n\n"):
        lines = [line[5:].lstrip(" ") for line in event.split("\n") if line.startswith("data:")]
        if lines:
            datas.append("\n".join(lines))
    if not datas or datas[-1] != "[DONE]":
        return LOST, "stream ends without [DONE]"
    if "[DONE]" in datas[:-1]:
        return LOST, "[DONE] before the end"
    chunks = []
    for data in datas[:-1]:
        try:
            chunks.append(json.loads(data))
        except ValueError:
            return LOST, "malformed chunk"
    errors = [i for i, c in enumerate(chunks) if _is_error(c)]
    if errors:
        if errors != [len(chunks) - 1]:
            return LOST, "content after an error event"
        return ERROR, f"stream error event {_error_code(chunks[-1])}"
    if len({c.get("id") for c in chunks}) != 1:
        return LOST, "chunks with different ids"
    finished = False
    content = []
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            finished = finished or bool(choice.get("finish_reason"))
            content.append((choice.get("delta") or {}).get("content") or "")
    if not finished:
        return LOST, "stream without finish_reason"
    if not "".join(content).startswith("echo: "):
        return LOST, "stream with a wrong answer"
    return ANSWERED, "ok"


async def one_request(session: Any, url: str, req: Req, timeout_s: float) -> Outcome:
    import aiohttp

    payload: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": req.prompt}],
    }
    if req.stream:
        payload["stream"] = True
    headers = {"content-type": "application/json", "x-request-id": f"bench-{req.n}"}
    if req.bypass:
        headers["x-optiroute-cache"] = "bypass"
    started = time.perf_counter()
    status, backend = 0, "-"
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url, data=json.dumps(payload), headers=headers) as resp:
                status = resp.status
                backend = resp.headers.get("x-optiroute-backend", "-")
                content_type = resp.headers.get("content-type", "")
                body = await resp.read()
    except TimeoutError:
        ms = (time.perf_counter() - started) * 1000
        return Outcome(LOST, f"hung (no end after {timeout_s:g} s)", ms, status, backend)
    except (aiohttp.ClientError, OSError) as exc:
        ms = (time.perf_counter() - started) * 1000
        return Outcome(LOST, f"connection: {type(exc).__name__}", ms, status, backend)
    ms = (time.perf_counter() - started) * 1000
    if req.stream:
        kind, reason = classify_stream(status, content_type, body)
    else:
        kind, reason = classify_json(status, body)
    return Outcome(kind, reason, ms, status, backend)


async def run_load(
    base_url: str,
    reqs: list[Req],
    concurrency: int,
    timeout_s: float,
    on_dispatch: Callable[[int], Any] | None = None,
) -> list[Outcome]:
    """A closed loop: ``concurrency`` workers, each sending its next request when done."""
    import aiohttp

    url = base_url + "/v1/chat/completions"
    results: list[Outcome | None] = [None] * len(reqs)
    cursor = iter(range(len(reqs)))
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for i in cursor:
                if on_dispatch is not None:
                    pending = on_dispatch(i)
                    if pending is not None:
                        await pending
                results[i] = await one_request(session, url, reqs[i], timeout_s)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r for r in results if r is not None]


class CircuitWatch:
    """Samples ``/readyz`` circuits while a row runs: the sequence of states per deployment."""

    def __init__(self, port: int, interval_s: float = 0.05) -> None:
        self.url = f"http://127.0.0.1:{port}/readyz"
        self.interval_s = interval_s
        self.sequences: dict[str, list[str]] = {}
        self.final: dict[str, str] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CircuitWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                stopping = self._stop.is_set()
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, ValueError):
                    async with session.get(self.url) as resp:
                        self._note((await resp.json()).get("circuits") or {})
                if stopping:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval_s)

    def _note(self, states: dict[str, str]) -> None:
        self.final = dict(states)
        for key, state in states.items():
            seq = self.sequences.setdefault(key, ["closed"])
            if seq[-1] != state:
                seq.append(state)

    def summary(self) -> str:
        parts = []
        for key in sorted(self.sequences):
            seq = self.sequences[key]
            if len(seq) < 2:
                continue
            names = [s.replace("half_open", "half") for s in seq]
            long = len(names) > 5
            shown = "→".join(names[:3]) + "→…→" + names[-1] if long else "→".join(names)
            parts.append(f"{key} {shown} ({len(seq) - 1})")
        return "; ".join(parts) or "all closed"


def parse_metric(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    pattern = re.compile(r"^" + re.escape(name) + r"(?:\{(.*)\})? ([-+0-9.eEinfNa]+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
            out.append((labels, float(match.group(2))))
    return out


def attempts_summary(metrics: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for labels, value in parse_metric(metrics, "optiroute_backend_attempts_total"):
        if value:
            out.setdefault(labels["backend"], {})[labels["outcome"]] = int(value)
    return out


def subtract(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
             ) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for backend, outcomes in after.items():
        for outcome, value in outcomes.items():
            delta = value - before.get(backend, {}).get(outcome, 0)
            if delta:
                out.setdefault(backend, {})[outcome] = delta
    return out


async def recover(sidecar: Sidecar, host: FakeHost, args: argparse.Namespace
                  ) -> tuple[float | None, str]:
    """Clear every fault; how long until every circuit is closed and the primary takes
    its share of simple and complex prompts (JSON and SSE) again.  Replicas of one model
    share the load, so the primary need not answer every call.  A circuit that never
    lets a probe through shows up here."""
    import aiohttp

    host.reset_all()
    started = time.monotonic()
    deadline = started + args.recovery_s
    offset = 2 * 10**6
    last = "no attempt"
    primary_seen = False
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            reqs = plan(4, offset=offset)
            offset += 4
            outs = await run_load(sidecar.url, reqs, 4, args.timeout)
            async with session.get(sidecar.url + "/readyz") as resp:
                circuits = (await resp.json()).get("circuits", {})
            stuck = {k: v for k, v in sorted(circuits.items()) if v != "closed"}
            primary_seen = primary_seen or any(o.backend == "primary" for o in outs)
            if all(o.kind == ANSWERED for o in outs) and not stuck and primary_seen:
                return time.monotonic() - started, "ok"
            last = (
                "answered by " + ",".join(f"{o.backend}:{o.kind}" for o in outs)
                + f"; circuits not closed: {stuck or '-'}"
            )
            await asyncio.sleep(0.2)
    return None, f"primary not back after {args.recovery_s:g}s: {last}"


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


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


def _scripted(index: int, make: Callable[[random.Random], list[Fault]]
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
    Row("http503_burst", "503 bursts on ~30% of primary calls",
        _scripted(PRIMARY, lambda rng: bursts(rng, Fault(status=503), 0.3))),
    Row("http429", "429 + Retry-After: 1 on every primary call",
        _always(PRIMARY, Fault(status=429, headers={"Retry-After": "1"}))),
    Row("reset_before", "reset before response, ~30% of primary calls",
        _scripted(PRIMARY, lambda rng: partial(rng, Fault(reset_before=True), 0.3))),
    Row("reset_mid", "reset after 3 SSE events, every primary stream",
        _always(PRIMARY, Fault(reset_after_chunks=3))),
    Row("truncated", "stream ends cleanly after 3 events, no [DONE]",
        _always(PRIMARY, Fault(truncate_after_chunks=3))),
    Row("slow_headers", "2 s before headers (> TTFT 0.5 s), ~30% of primary",
        _scripted(PRIMARY, lambda rng: partial(rng, Fault(delay_s=2.0), 0.3))),
    Row("slow_gaps", "1.5 s between SSE events (> idle 1 s), every primary",
        _always(PRIMARY, Fault(chunk_delay_s=1.5))),
    Row("bad_json", "200 with a body that is not JSON, every primary call",
        _always(PRIMARY, Fault(malformed_json=True))),
    Row("bad_sse", "garbage data: event after the first, every primary",
        _always(PRIMARY, Fault(malformed_sse=True))),
    Row("stream_error", "error event after 2 SSE events, every primary",
        _always(PRIMARY, Fault(mid_stream_error=True))),
    Row("chain_mid", "primary resets mid-stream, secondary errors mid-stream",
        _chain_mid),
    Row("slow_continue", "primary resets mid-stream; the others pace events 50 ms apart",
        _slow_continue),
    Row("port_closed", "primary stopped after 25% of requests (refused)",
        lambda host, rng: None, stop_primary_at=0.25),
    Row("cache_503", "503 bursts ~30%, cache on, 8 prompts (single-flight)",
        _scripted(PRIMARY, lambda rng: bursts(rng, Fault(status=503), 0.3)),
        bypass=False, distinct=8),
    Row("mixed", "every kind, ~30% of primary and secondary calls", _mixed_two),
    Row("all_down", "500 on every call of every backend (no fallback)", _all_failing,
        fallback=False),
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


async def run_row(row: Row, host: FakeHost, workdir: Path, args: argparse.Namespace,
                  extra_env: dict[str, str]) -> RowResult:
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
        stop_at = (
            None if row.stop_primary_at is None else int(len(reqs) * row.stop_primary_at)
        )

        def on_dispatch(i: int) -> Any:
            if i == stop_at:
                return asyncio.to_thread(host.stop, PRIMARY)
            return None

        async with CircuitWatch(sidecar.port) as watch:
            outcomes = await run_load(sidecar.url, reqs, args.concurrency, args.timeout,
                                      on_dispatch)
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
    head = ["fault", "requests", "answered", "answered%", "clean_errors", "lost", "p50_ms",
            "p99_ms", "recovered", "check", "breaker"]
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

    return "\n".join([line(head), line(["-" * w for w in widths[:-1]] + ["-------"])]
                     + [line(r) for r in rows])


def details(results: list[RowResult]) -> str:
    out = []
    for r in results:
        attempts = "; ".join(
            f"{backend} " + " ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
            for backend, outcomes in sorted(r.attempts.items())
        )
        by = " ".join(f"{k}={v}" for k, v in sorted(r.answered_by.items())) or "-"
        out.append(f"{r.id}: {r.fault}; {r.seconds:.1f}s; sidecar {r.sidecar_cpu_s:.1f} cpu-s, "
                   f"{r.sidecar_rss_mb:.0f} MB, stopped in {r.sidecar_stop_s:.1f}s "
                   f"(exit {r.sidecar_exit})")
        out.append(f"    answered by: {by}")
        out.append(f"    backend attempts: {attempts or '-'}")
        if r.error_reasons:
            out.append("    clean errors: " + ", ".join(
                f"{k} x{v}" for k, v in sorted(r.error_reasons.items())))
        if r.lost_reasons:
            out.append("    LOST: " + ", ".join(
                f"{k} x{v}" for k, v in sorted(r.lost_reasons.items())))
        if r.recovery != "ok":
            out.append(f"    recovery: {r.recovery}")
        if r.log_problems:
            out.append(f"    sidecar log: {len(r.log_problems)} error line(s), first: "
                       f"{r.log_problems[0][:300]}")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per row (200)")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop workers (16)")
    parser.add_argument("--timeout", type=float, default=15.0,
                        help="client deadline per request; reaching it counts as lost (15)")
    parser.add_argument("--rows", default="", help="comma-separated row ids (default: all)")
    parser.add_argument("--seed", default="1", help="seed of the scripted fault mixes")
    parser.add_argument("--min-answered", type=float, default=99.9,
                        help="answered%% required where a healthy fallback exists (99.9)")
    parser.add_argument("--set", action="append", default=[], metavar="OPTIROUTE_X=V",
                        help="extra sidecar setting (repeatable), e.g. "
                             "OPTIROUTE_BREAKER_COOLDOWN_S=30")
    parser.add_argument("--recovery-s", type=float, default=5.0,
                        help="after each row's load the faults are cleared; how long the "
                             "primary may take to answer again (5)")
    parser.add_argument("--strict", action="store_true",
                        help="also fail a row whose primary did not come back in time")
    parser.add_argument("--json", action="store_true", help="one JSON object per row at the end")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (sidecar and fake-backend logs)")
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
            log(f"{row.id:14} {result.requests} req, {result.answered} answered, "
                f"{result.errors} errors, {result.lost} lost, p99 {result.p99_ms:.0f} ms, "
                f"{result.seconds:.1f}s")
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
    print(f"{args.requests} requests per row (half SSE), concurrency {args.concurrency}, "
          f"client deadline {args.timeout:g} s, seed {args.seed}; run took "
          f"{time.monotonic() - started:.0f}s; load average {' '.join(load)}")
    failed = [r.id for r in results if not r.passed]
    print("check: " + (f"FAILED rows: {', '.join(failed)}" if failed else
                       f"lost = 0 everywhere, answered >= {args.min_answered:g}% "
                       "wherever a healthy fallback exists"))
    if args.json:
        for r in results:
            doc = dict(vars(r))
            doc["answered_pct"] = r.answered_pct
            doc["log_problems"] = {"count": len(r.log_problems), "first": r.log_problems[:3]}
            print(json.dumps(doc, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
