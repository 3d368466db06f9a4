"""What auth and rate limits add to a call, measured in-process (no sockets).

The same chat request is sent straight into ASGI apps, one after another:

* ``bare``: a terminal app that answers a canned completion;
* ``ingress``: the ingress stage in front of it (parse, controls, headers, metrics);
* ``+ key, limits, ledger``: the same with an API key checked against the key
  store, per-key and global RPM/TPM buckets in memory, the budget check and a
  ledger row per call (written by the background task, as in production);
* ``+ redis limits``: the buckets in a real redis-server instead (one Lua call to
  take, one to correct), when ``redis-server`` is installed.

Log lines are switched off (they would measure the terminal, not the checks).
Prints per-call latency (p50/p99, microseconds) and the difference to ``ingress``.

    .venv/bin/python bench/ingress_overhead.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

from optiroute_mw.exchange import get_exchange
from optiroute_mw.ingress.access import Access
from optiroute_mw.ingress.keys import KeyStore
from optiroute_mw.ingress.middleware import IngressMiddleware
from optiroute_mw.observe.metrics import Metrics
from optiroute_mw.settings import Settings

BODY = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "What is 2+2?"}]}'
ANSWER = (
    b'{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"4"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}'
)


async def terminal(scope: Any, receive: Any, send: Any) -> None:
    exchange = get_exchange(scope)
    if exchange is not None:
        exchange.prompt_tokens, exchange.completion_tokens = 12, 1
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER, "more_body": False})


async def measure(
    app: Any, headers: list[tuple[bytes, bytes]], calls: int
) -> tuple[list[float], list[float]]:
    """Per call: time to the last response byte (what the client waits for) and time
    until the app returned (that plus the after-answer accounting)."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    statuses: list[int] = []
    answered = [0.0]

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        elif not message.get("more_body", False):
            answered[0] = time.perf_counter()

    base = [(b"content-type", b"application/json"), *headers]
    to_answer: list[float] = []
    whole: list[float] = []
    for _ in range(calls):
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": list(base),
            "state": {},
        }
        started = time.perf_counter()
        await app(scope, receive, send)
        ended = time.perf_counter()
        to_answer.append(answered[0] - started)
        whole.append(ended - started)
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses: {sorted(set(statuses))}")
    return to_answer, whole


def start_redis(folder: str) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    args += ["--appendonly", "no", "--dir", folder]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    process.kill()
    return None


async def run(calls: int) -> None:
    folder = tempfile.mkdtemp(prefix="optiroute-bench-")
    redis = start_redis(folder)
    try:
        store = KeyStore(str(Path(folder) / "keys.db"))
        key, _ = store.create("bench", rpm=10**9, tpm=10**12, budget_usd=10**6)
        keyed = [(b"authorization", b"Bearer " + key.encode())]
        common = {
            "keys_db": store.path,
            "ledger_path": str(Path(folder) / "ledger.db"),
            "global_rpm": 10**9,
            "global_tpm": 10**12,
        }
        variants: list[tuple[str, Any, list[tuple[bytes, bytes]], Access | None]] = [
            ("bare", terminal, [], None),
            ("ingress", IngressMiddleware(terminal, metrics=Metrics()), [], None),
        ]
        urls: list[tuple[str, str | None]] = [("+ key, limits, ledger", None)]
        if redis is not None:
            urls.append(("+ redis limits", redis[1]))
        for name, url in urls:
            settings = Settings(redis_url=url, **common)  # type: ignore[arg-type]
            metrics = Metrics()
            access = Access(settings, metrics=metrics)
            await access.start()
            app = IngressMiddleware(terminal, settings=settings, metrics=metrics, access=access)
            variants.append((name, app, keyed, access))

        results: dict[str, tuple[list[float], list[float]]] = {}
        for name, app, headers, _ in variants:
            await measure(app, headers, max(200, calls // 10))  # warm-up
            results[name] = await measure(app, headers, calls)
        for _, _, _, started in variants:
            if started is not None:
                await started.stop()
    finally:
        if redis is not None:
            redis[0].terminate()
            redis[0].wait(5)
        shutil.rmtree(folder, ignore_errors=True)

    def us(samples: list[float], q: float) -> float:
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6

    print(f"{calls} calls per variant, in-process, one event loop; microseconds")
    print("to answer: request in to last response byte; whole: until the app returned")
    print(
        f"{'variant':<24}{'p50':>8}{'p99':>9}{'mean':>8}{'+p50 vs ingress':>17}"
        f"{'whole p50':>11}{'whole mean':>12}"
    )
    reference = us(results["ingress"][0], 0.5)
    for name, (answer, whole) in results.items():
        p50 = us(answer, 0.5)
        delta = f"{p50 - reference:+.1f}" if name.startswith("+") else ""
        print(
            f"{name:<24}{p50:>8.1f}{us(answer, 0.99):>9.1f}"
            f"{statistics.fmean(answer) * 1e6:>8.1f}{delta:>17}"
            f"{us(whole, 0.5):>11.1f}{statistics.fmean(whole) * 1e6:>12.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    asyncio.run(run(args.calls))


if __name__ == "__main__":
    main()
