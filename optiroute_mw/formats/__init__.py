"""Client formats other than OpenAI chat, translated at the edge of the stack.

``/v1/messages`` (Anthropic's Messages API) is turned into the OpenAI chat request the
stages work on and its answers turned back; ``/v1/embeddings`` is forwarded on a short
path of its own.  See :mod:`.edge`.
"""

from __future__ import annotations

from .edge import CHAT_PATH, EMBEDDINGS_PATH, MESSAGES_PATH, AnthropicEdge, ClientFormats
from .embeddings import EmbeddingsEndpoint

__all__ = [
    "CHAT_PATH",
    "EMBEDDINGS_PATH",
    "MESSAGES_PATH",
    "AnthropicEdge",
    "ClientFormats",
    "EmbeddingsEndpoint",
]
