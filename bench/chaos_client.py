"""The chaos bench's client side: bounded load, and how each answer is classified."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chaos_env import (
    ANSWERED,
    ERROR,
    HARD,
    LOST,
    MODEL,
    SIMPLE,
    FakeHost,
    Sidecar,
)

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


def plan(
    count: int, *, bypass: bool = True, distinct: int | None = None, offset: int = 0
) -> list[Req]:
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


def subtract(
    after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for backend, outcomes in after.items():
        for outcome, value in outcomes.items():
            delta = value - before.get(backend, {}).get(outcome, 0)
            if delta:
                out.setdefault(backend, {})[outcome] = delta
    return out


async def recover(
    sidecar: Sidecar, host: FakeHost, args: argparse.Namespace
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
                "answered by "
                + ",".join(f"{o.backend}:{o.kind}" for o in outs)
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
