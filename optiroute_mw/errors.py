"""OpenAI-style error responses sent straight over ASGI."""

from __future__ import annotations

from starlette.types import Send

from .wire import error_body

JSON = (b"content-type", b"application/json")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type_for(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    raw = [JSON, (b"content-length", str(len(body)).encode())]
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(
    send: Send,
    status: int,
    message: str,
    code: str | None = None,
    *,
    error_type: str | None = None,
    param: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = error_body(message, error_type or error_type_for(status), code, param)
    await send_json(send, status, body, headers)


class BackendFailure(Exception):
    """A backend call that failed before anything reached the client."""

    def __init__(
        self, outcome: str, status: int, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.status = status
        self.message = message
        self.retry_after = retry_after
