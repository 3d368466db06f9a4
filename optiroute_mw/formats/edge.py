"""Client formats at the edge of the stack.

:class:`ClientFormats` sits in front of the pipeline (ingress first).  An
Anthropic Messages call (``POST /v1/messages``) is translated into the OpenAI chat
request the stages work on, so the cache, the classifier and the selector see one
normalized request whichever format came in, and it can be routed to any backend;
the answer (JSON, SSE, or an error) is translated back into Anthropic's format on
its way out.  Embeddings (``POST /v1/embeddings``) take their own short path
(:mod:`.embeddings`).  Everything else goes straight on.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import send_json
from ..exchange import BodyReplay, ClientDisconnected, read_body
from ..wire import RequestError, encode
from .anthropic_request import FormatError, decode_request, to_openai_request
from .anthropic_response import error_body, error_from_openai, message_from_completion
from .anthropic_stream import AnthropicEventWriter

MESSAGES_PATH = "/v1/messages"
EMBEDDINGS_PATH = "/v1/embeddings"
CHAT_PATH = "/v1/chat/completions"


class ClientFormats:
    def __init__(
        self, pipeline: ASGIApp, *, max_body_bytes: int, embeddings: ASGIApp | None = None
    ) -> None:
        self.pipeline = pipeline
        self.messages = AnthropicEdge(pipeline, max_body_bytes=max_body_bytes)
        self.embeddings = embeddings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"].rstrip("/")
            if path == MESSAGES_PATH:
                await self.messages(scope, receive, send)
                return
            if path == EMBEDDINGS_PATH and self.embeddings is not None:
                await self.embeddings(scope, receive, send)
                return
        await self.pipeline(scope, receive, send)


class AnthropicEdge:
    """``/v1/messages`` in, the OpenAI chat route through ``app``, Anthropic out."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(receive, self.max_body_bytes)
            request = decode_request(body)
            chat = encode(to_openai_request(request))
        except ClientDisconnected:
            return
        except RequestError as exc:
            await send_json(send, exc.status, error_body(exc.status, exc.message))
            return
        except FormatError as exc:
            await send_json(send, 400, error_body(400, str(exc)))
            return
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"content-length", b"content-type")
        ]
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(chat))]
        inner = {
            **scope,
            "path": CHAT_PATH,
            "raw_path": CHAT_PATH.encode(),
            "headers": headers,
        }
        responder = AnthropicResponder(send)
        await self.app(inner, BodyReplay(chat, receive), responder.send)


class AnthropicResponder:
    """Translates what the stack sends: an SSE stream event by event, JSON whole."""

    def __init__(self, send: Send) -> None:
        self.wrapped_send = send
        self.start: Message | None = None
        self.writer: AnthropicEventWriter | None = None
        self.parts: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            content_type = next((v for k, v in headers if k == b"content-type"), b"")
            if message["status"] == 200 and content_type.startswith(b"text/event-stream"):
                self.writer = AnthropicEventWriter()
                await self.wrapped_send(message)
            else:
                self.start = message  # held until the body is known: its length changes
            return
        if message["type"] != "http.response.body":
            await self.wrapped_send(message)
            return
        more = message.get("more_body", False)
        if self.writer is not None:
            out = self.writer.feed(message.get("body", b""))
            if not more:
                out += self.writer.close()
            if out or not more:
                await self.wrapped_send(
                    {"type": "http.response.body", "body": out, "more_body": more}
                )
            return
        self.parts.append(message.get("body", b""))
        if not more:
            await self._send_json()

    async def _send_json(self) -> None:
        start = self.start
        if start is None:
            return
        status = start["status"]
        body = b"".join(self.parts)
        translated = message_from_completion(body) if status == 200 else None
        if translated is None:
            if status == 200:
                status = 502  # a 200 that is not an answer: never pass it off as one
            translated = error_from_openai(status, body)
        headers = [
            (k, v)
            for k, v in start.get("headers", ())
            if k not in (b"content-length", b"content-type")
        ]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(translated)),
        ]
        await self.wrapped_send({**start, "status": status, "headers": headers})
        await self.wrapped_send(
            {"type": "http.response.body", "body": translated, "more_body": False}
        )
