"""OpenAI wire types as msgspec Structs, and the parsing of request bodies.

The typed Structs are a validated *view* of a request: the body bytes travel on
unchanged, so fields we do not model reach the backend verbatim.  A body is only
re-encoded when the gateway has to change something in it (the model name).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
Content = str | list[dict[str, Any]] | None


class ChatMessage(msgspec.Struct, omit_defaults=True):
    role: Role
    content: Content = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(msgspec.Struct, omit_defaults=True):
    include_usage: bool = False


NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]


class ChatRequest(msgspec.Struct, omit_defaults=True):
    model: str
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] | None = None
    max_tokens: Positive | None = None
    max_completion_tokens: Positive | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return content_text(message.content)
        return ""

    def prompt_text(self) -> str:
        return "\n".join(content_text(m.content) for m in self.messages)


class CompletionRequest(msgspec.Struct, omit_defaults=True):
    model: str
    # str, a list of str, token ids or lists of token ids: validated loosely.
    prompt: str | list[Any]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Positive | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def last_user_text(self) -> str:
        return self.prompt_text()

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        return "\n".join(str(p) for p in self.prompt if isinstance(p, str))


LLMRequest = ChatRequest | CompletionRequest


def content_text(content: Content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(str(part.get("text", "")) for part in content if part.get("type") == "text")


# --- responses -----------------------------------------------------------------------


class Usage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ResponseMessage(msgspec.Struct):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class Choice(msgspec.Struct):
    index: int = 0
    message: ResponseMessage = msgspec.field(default_factory=ResponseMessage)
    finish_reason: str | None = None
    logprobs: Any = None


class ChatCompletion(msgspec.Struct):
    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None


class Delta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(msgspec.Struct):
    index: int = 0
    delta: Delta = msgspec.field(default_factory=Delta)
    finish_reason: str | None = None
    logprobs: Any = None


class ChatCompletionChunk(msgspec.Struct):
    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None


class UsageOnly(msgspec.Struct):
    """Just enough of any response or chunk to read its usage and model."""

    usage: Usage | None = None
    model: str | None = None


class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


# --- parsing -------------------------------------------------------------------------


class RequestError(Exception):
    """A client-side problem with the request: becomes a 4xx OpenAI-style error."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        code: str = "invalid_request",
        param: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.type = error_type


_chat_decoder = msgspec.json.Decoder(ChatRequest)
_completion_decoder = msgspec.json.Decoder(CompletionRequest)
_usage_decoder = msgspec.json.Decoder(UsageOnly)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def parse_request(kind: str, body: bytes) -> LLMRequest:
    """Validate a request body; raise RequestError with a message a person can act on."""
    if not body.strip():
        raise RequestError("Request body is empty; expected a JSON object.", code="invalid_json")
    decoder = _chat_decoder if kind == "chat" else _completion_decoder
    try:
        request: LLMRequest = decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = text.rsplit("`$.", 1)[1].rstrip("`") if "`$." in text else None
        if "Object missing required field" in text:
            field = text.split("`")[1] if "`" in text else None
            raise RequestError(
                f"Missing required parameter: '{field}'.",
                code="missing_required_parameter",
                param=field,
            ) from None
        raise RequestError(f"Invalid request: {text}", code="invalid_type", param=param) from None
    except msgspec.DecodeError as exc:
        raise RequestError(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    return request


def decode_object(body: bytes) -> dict[str, Any]:
    value = _any_decoder.decode(body)
    if not isinstance(value, dict):
        raise RequestError("Request body must be a JSON object.", code="invalid_json")
    return value


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def read_usage(payload: bytes) -> UsageOnly | None:
    try:
        return _usage_decoder.decode(payload)
    except msgspec.MsgspecError:
        return None


def error_body(
    message: str, error_type: str, code: str | None = None, param: str | None = None
) -> bytes:
    return _encoder.encode(ErrorBody(ErrorDetail(message, error_type, code, param)))
