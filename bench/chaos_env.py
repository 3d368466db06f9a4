"""The chaos bench's set-up: scripted fake backends in a helper process, and the sidecar."""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
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


def bursts(
    rng: random.Random, fault: Fault, share: float, mean_burst: float = 3.0, n: int = 4000
) -> list[Fault]:
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

    def __init__(
        self, workdir: Path, ports: list[int], extra_env: dict[str, str], tag: str
    ) -> None:
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
