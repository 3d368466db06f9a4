"""What a request needs from a model: room in its context window and capabilities.

Tokens are estimated on the safe side (no tokenizer download is possible here): about
3.5 characters a token for ASCII text, one token per other character (CJK scripts,
emoji, accented text run denser than English), a few tokens of framing per message, tool
schemas counted as their JSON, and a flat allowance per image.  Overestimating only
steers a borderline prompt to a larger window; underestimating would send it where it
cannot fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..wire import ChatRequest, LLMRequest, encode

CHARS_PER_TOKEN = 3.5
TOKENS_PER_MESSAGE = 4
TOKENS_PER_IMAGE = 1_000
DEFAULT_OUTPUT_TOKENS = 256
MAX_RESERVED_OUTPUT = 1_024  # a huge max_tokens need not all fit for the call to work
IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})


def text_tokens(text: str) -> int:
    if text.isascii():
        return int(len(text) / CHARS_PER_TOKEN) + 1
    wide = sum(1 for ch in text if ord(ch) > 127)
    return int((len(text) - wide) / CHARS_PER_TOKEN) + wide + 1


@dataclass(slots=True, frozen=True)
class Needs:
    prompt_tokens: int
    output_tokens: int  # what the caller allows the answer (or the default)
    capabilities: frozenset[str]

    @property
    def window(self) -> int:
        """Tokens the model's context window must hold."""
        return self.prompt_tokens + min(self.output_tokens, MAX_RESERVED_OUTPUT)


def _images(content: Any) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, dict) and part.get("type") in IMAGE_PARTS)


def needs_of(request: LLMRequest) -> Needs:
    capabilities: set[str] = set()
    if isinstance(request, ChatRequest):
        tokens = 0
        images = 0
        for message in request.messages:
            tokens += TOKENS_PER_MESSAGE + text_tokens(_text(message.content))
            images += _images(message.content)
            if message.tool_calls:
                tokens += text_tokens(encode(message.tool_calls).decode())
        if request.tools:
            capabilities.add("tools")
            tokens += text_tokens(encode(request.tools).decode())
        if images:
            capabilities.add("vision")
            tokens += images * TOKENS_PER_IMAGE
        kind = (request.response_format or {}).get("type")
        if kind in ("json_object", "json_schema"):
            capabilities.add("json")
        output = request.max_completion_tokens or request.max_tokens
    else:
        tokens = text_tokens(request.prompt_text())
        output = request.max_tokens
    return Needs(tokens, output or DEFAULT_OUTPUT_TOKENS, frozenset(capabilities))


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
