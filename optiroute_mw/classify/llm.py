"""The optional LLM classifier: a cheap model rates the prompt 1 to 3, under a strict timeout.

The rating call goes through the same forwarder as every other call (so it uses the
registry's backends, adapters and keys), with a short answer budget.  Anything but a
clean rating in time (a timeout, an error status, an answer without a digit 1-3) falls
back to the rule classifier, so the request itself never waits longer than the timeout
or fails because of it.  The rating call's cost is not billed to the request.
"""

from __future__ import annotations

import asyncio
import re
import uuid

import msgspec
from starlette.types import ASGIApp, Message

from ..exchange import STATE_KEY, Classification, Exchange
from ..registry import ModelSpec
from ..wire import encode, parse_request
from .routers import FailureHook, Router, RulesRouter

TIERS = ("simple", "medium", "complex")
MAX_PROMPT_CHARS = 2_000
RATING_PROMPT = (
    "Rate how hard the request below is for an AI assistant to answer well.\n"
    "Reply with one digit only:\n"
    "1 = simple (greeting, a fact, a definition, a short rewrite or translation)\n"
    "2 = medium (an explanation, a summary, a short piece of code, a comparison)\n"
    "3 = complex (multi-step reasoning, math or proofs, system design, long code)\n\n"
    "Request:\n{prompt}"
)
_RATING = re.compile(r"[1-3]")


class RatingFailed(Exception):
    """The rating model did not give a usable answer."""


class LLMClassifier:
    def __init__(
        self,
        app: ASGIApp,
        model: ModelSpec,
        *,
        timeout_s: float = 1.0,
        fallback: Router | None = None,
        on_failure: FailureHook | None = None,
    ) -> None:
        self.app = app  # the forwarder
        self.model = model
        self.timeout_s = timeout_s
        self.fallback = fallback or RulesRouter()
        self.on_failure = on_failure

    async def decide(self, exchange: Exchange) -> Classification:
        text = exchange.request.last_user_text()[:MAX_PROMPT_CHARS]
        try:
            async with asyncio.timeout(self.timeout_s):
                answer = await self.ask(RATING_PROMPT.format(prompt=text))
            found = _RATING.search(answer)
            if found is None:
                raise RatingFailed(f"no rating in {answer[:40]!r}")
        except Exception as exc:  # timeouts included: the rules decide instead
            if self.on_failure is not None:
                self.on_failure("llm classifier failed", exc)
            return await self.fallback.decide(exchange)
        rating = int(found.group())
        return Classification(
            tier=TIERS[rating - 1],
            score=float(rating),
            features={"llm_rating": float(rating)},
            source="llm",
        )

    async def ask(self, prompt: str) -> str:
        """One short, non-streamed chat call to the rating model; its answer text."""
        body = encode(
            {
                "model": self.model.name,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 4,
                "temperature": 0,
            }
        )
        exchange = Exchange(
            request_id=uuid.uuid4().hex,
            kind="chat",
            path="/v1/chat/completions",
            body=body,
            request=parse_request("chat", body),
        )
        exchange.model = self.model
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [],
            "state": {STATE_KEY: exchange},
        }
        status = 0
        chunks: list[bytes] = []

        async def receive() -> Message:
            await asyncio.Event().wait()  # never: the body is in the Exchange already
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        if status != 200:
            raise RatingFailed(f"rating model answered {status}")
        return _answer_text(b"".join(chunks))


def _answer_text(payload: bytes) -> str:
    try:
        data = msgspec.json.decode(payload)
        content = data["choices"][0]["message"]["content"]
    except (msgspec.DecodeError, KeyError, IndexError, TypeError) as exc:
        raise RatingFailed("malformed rating answer") from exc
    return str(content or "")
