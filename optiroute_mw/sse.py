"""Server-sent events: split a byte stream into events, and build them."""

from __future__ import annotations

from .wire import error_body

DONE = b"data: [DONE]\n\n"


class EventSplitter:
    """Cuts a stream of bytes into whole SSE events (each ending in a blank line)."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._pending + data if self._pending else data
        if b"\r" in buffer:
            # a "\r\n" may be split across reads: fold after joining, keep a trailing "\r"
            held = buffer.endswith(b"\r")
            buffer = buffer[:-1].replace(b"\r\n", b"\n") if held else buffer.replace(b"\r\n", b"\n")
            if held:
                buffer += b"\r"
        events: list[bytes] = []
        start = 0
        while (end := buffer.find(b"\n\n", start)) >= 0:
            events.append(buffer[start : end + 2])
            start = end + 2
        self._pending = buffer[start:]
        return events

    def rest(self) -> bytes:
        pending, self._pending = self._pending, b""
        return pending


def event_data(event: bytes) -> bytes | None:
    """The payload of an event's ``data:`` lines, or None for comments and pings."""
    if event.startswith(b"data: ") and event.count(b"\n") <= 2:
        return event[6:].rstrip(b"\n")  # the common one-line case, no copying loop
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def data_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def error_event(message: str, code: str = "stream_interrupted") -> bytes:
    """The end of a stream that failed: an OpenAI-style error event, then [DONE]."""
    return data_event(error_body(message, "api_error", code)) + DONE
