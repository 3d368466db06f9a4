"""Structured logs: one JSON line per request, console on a TTY, stdlib routed, secrets masked."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog
from support.serve import ServerThread

from optiroute_mw.observe.logging import MASK, configure, redact
from optiroute_mw.observe.request_line import RequestLine, log_request
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings

CLIENT_KEY = "sk-or-client-key-0123456789abcdef"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]


def request_lines(buffer: io.StringIO, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:  # the line is written once the answer has gone out
        found = [line for line in lines(buffer) if line["event"] == "request"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_redact_masks_secret_fields_and_values() -> None:
    event: dict[str, Any] = {
        "event": "call with sk-abcdefghijklmnop1234 inside",
        "api_key": "plain",
        "Authorization": "Bearer abc",
        "x-api-key": "whatever",
        "password": "hunter2",
        "headers": {"authorization": "Bearer abcdefghijk", "accept": "json"},
        "notes": ["token hf_ABCDEFGHIJKLMNOPQRSTU", "fine", {"cookie": "c=1"}],
        "aws": "AKIAABCDEFGHIJKLMNOP",
        "github": "ghp_abcdefghijklmnopqrstuvwxyz",
        "prompt_tokens": 12,
        "max_tokens": 100,
        "input_tokens": 7,
        "model": "gpt-4o",
    }
    out = redact(None, "info", event)
    assert out["event"] == f"call with {MASK} inside"
    for key in ("api_key", "Authorization", "x-api-key", "password"):
        assert out[key] == MASK
    assert out["headers"] == {"authorization": MASK, "accept": "json"}
    assert out["notes"] == [f"token {MASK}", "fine", {"cookie": MASK}]
    assert out["aws"] == MASK and out["github"] == MASK
    assert (out["prompt_tokens"], out["max_tokens"], out["input_tokens"]) == (12, 100, 7)
    assert out["model"] == "gpt-4o"


def test_json_lines_stdlib_routed_and_tracebacks_redacted(restore_logging: None) -> None:
    buffer = io.StringIO()
    configure("info", "auto", stream=buffer, cache=False)  # not a TTY: JSON
    structlog.get_logger("t").info("hello", api_key="k", detail="Bearer abcdefghijkl")
    logging.getLogger("some.library").warning("sent key %s", "sk-abcdefghijklmnopqrstu")
    try:
        raise ValueError("refused sk-abcdefghijklmnopqrstu")
    except ValueError:
        structlog.get_logger("t").exception("failed")
    structlog.get_logger("t").debug("below the level")
    first, second, third = lines(buffer)
    assert first["event"] == "hello" and first["level"] == "info" and "timestamp" in first
    assert first["api_key"] == MASK and first["detail"] == MASK
    assert second == {**second, "logger": "some.library", "level": "warning"}
    assert second["event"] == f"sent key {MASK}"
    assert "ValueError: refused [redacted]" in third["exception"]
    assert "sk-abcdefghijklmnopqrstu" not in buffer.getvalue()


def test_console_rendering_on_a_tty(restore_logging: None) -> None:
    tty = Tty()
    configure("info", "auto", stream=tty, cache=False)
    structlog.get_logger("t").info("hello_console", token="abc", n=1)
    logging.getLogger("lib").warning("from stdlib")
    text = tty.getvalue()
    assert "hello_console" in text and "from stdlib" in text
    assert not text.lstrip().startswith("{")
    assert "abc" not in text and MASK in text


def test_one_line_per_request_with_the_fields(
    make_settings: Callable[..., Settings], restore_logging: None
) -> None:
    buffer = io.StringIO()
    configure("info", "json", stream=buffer, cache=False)
    settings = make_settings()
    body = {"model": "large", "messages": [{"role": "user", "content": "What is 2+2?"}]}
    with ServerThread(create_app(settings)) as server, httpx.Client(base_url=server.url) as c:
        answer = c.post(
            "/v1/chat/completions",
            json=body,
            headers={"x-request-id": "req-log-1", "authorization": f"Bearer {CLIENT_KEY}"},
        )
        again = c.post("/v1/chat/completions", json=body)
        found = request_lines(buffer, 2)
    assert answer.status_code == 200 and again.status_code == 200
    assert len(found) == 2
    # the miss's line is written once its answer is stored, which may be after the hit's
    line = next(f for f in found if f["request_id"] == "req-log-1")
    found = [line] + [f for f in found if f is not line]
    assert line["request_id"] == "req-log-1" == answer.headers["x-request-id"]
    assert line["tenant"] == "default"
    assert line["route"] == "chat"
    assert line["requested_model"] == "large"
    assert line["model"] == answer.headers["x-optiroute-model"]
    assert line["tier"] == answer.headers["x-optiroute-tier"]
    assert line["cache"] == "miss" and found[1]["cache"] == "hit-exact"
    assert line["status"] == 200
    assert line["latency_ms"] >= line["overhead_ms"] >= 0
    assert line["prompt_tokens"] > 0 and line["completion_tokens"] > 0
    assert line["cost_usd"] == pytest.approx(float(answer.headers["x-optiroute-cost"]))
    assert "prompt" not in line  # off by default
    assert CLIENT_KEY not in buffer.getvalue()


def test_prompt_excerpt_is_opt_in_truncated_and_redacted(
    make_settings: Callable[..., Settings], restore_logging: None
) -> None:
    buffer = io.StringIO()
    configure("info", "json", stream=buffer, cache=False)
    settings = make_settings(log_prompts=True, log_prompts_chars=40)
    short = "Capital of France?"
    secret = "my key is sk-abcdefghijklmnopqrstuv, " + "and more words " * 20
    with ServerThread(create_app(settings)) as server, httpx.Client(base_url=server.url) as c:
        for text in (short, secret):
            body = {"model": "large", "messages": [{"role": "user", "content": text}]}
            assert c.post("/v1/chat/completions", json=body).status_code == 200
        first, second = request_lines(buffer, 2)
    assert first["prompt"] == short and "prompt_chars" not in first
    assert second["prompt_chars"] == len(secret)
    assert second["prompt"] == f"my key is {MASK}, and…"  # 40 characters, then masked
    assert "sk-abcdefghijklmnopqrstuv" not in buffer.getvalue()


def sample_line(**overrides: Any) -> RequestLine:
    fields: dict[str, Any] = {
        "request_id": "req-sk-abcdefghijklmnopqrstu",
        "tenant": "default",
        "route": "chat",
        "requested_model": "large",
        "model": "small",
        "backend": "primary",
        "tier": "simple",
        "mode": "balanced",
        "cache": "miss",
        "stream": False,
        "status": 200,
        "attempts": 1,
        "latency_ms": 3.5,
        "overhead_ms": 0.2,
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "usage_estimated": False,
        "cost_usd": 3.2e-06,
        "baseline_cost_usd": 8e-05,
        "event": "request",
        "level": "info",
        "timestamp": "",
    }
    return RequestLine(**{**fields, **overrides})


def test_request_line_fast_path_matches_the_structlog_path(restore_logging: None) -> None:
    buffer = io.StringIO()
    configure("info", "json", stream=buffer, cache=False)
    log_request(sample_line(prompt="key sk-abcdefghijklmnopqrstu"), structlog.get_logger("r"))
    (fast,) = lines(buffer)
    with structlog.testing.capture_logs() as captured:  # not JSON lines: through structlog
        log_request(sample_line(prompt="key sk-abcdefghijklmnopqrstu"), structlog.get_logger("r"))
    (slow,) = captured
    assert fast.pop("level") == slow.pop("log_level") == "info"
    assert time.time() - 5 < parse_utc(fast.pop("timestamp")) <= time.time() + 1
    assert fast == {**slow, "request_id": f"req-{MASK}", "prompt": f"key {MASK}"}
    assert "sk-abcdefghijklmnopqrstu" not in buffer.getvalue()
    assert "prompt_chars" not in fast  # unset fields are left out, as before


def test_request_line_respects_the_level(restore_logging: None) -> None:
    buffer = io.StringIO()
    configure("warning", "json", stream=buffer, cache=False)
    log_request(sample_line(), structlog.get_logger("r"))
    assert buffer.getvalue() == ""


def parse_utc(stamp: str) -> float:
    from datetime import datetime

    assert stamp.endswith("Z")
    return datetime.fromisoformat(stamp[:-1] + "+00:00").timestamp()


class CountingStream(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_request_lines_of_one_loop_turn_go_out_in_one_write(restore_logging: None) -> None:
    import asyncio

    stream = CountingStream()
    configure("info", "json", stream=stream, cache=False)

    async def burst() -> int:
        for n in range(3):
            log_request(sample_line(request_id=f"req-{n}"), structlog.get_logger("r"))
        waiting = stream.writes  # nothing written yet: the lines wait for the turn's end
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return waiting

    assert asyncio.run(burst()) == 0
    assert stream.writes == 1
    assert [line["request_id"] for line in lines(stream)] == ["req-0", "req-1", "req-2"]
    # a loop that ends with a line still waiting: the next writer, on another loop, takes it
    loop = asyncio.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
    loop.call_soon(log_request, sample_line(request_id="req-3"), structlog.get_logger("r"))
    loop.stop()
    loop.run_forever()  # runs the call, not the flush it schedules
    loop.close()
    asyncio.run(burst())
    written = [line["request_id"] for line in lines(stream)]
    assert written[3:] == ["req-3", "req-0", "req-1", "req-2"]
