"""Prompt-like text of any length, shared by the in-process latency scripts."""

from __future__ import annotations

from pathlib import Path

# the embedding model beside the checkout (../shared/models), for scripts that load it
SHARED_MODEL = Path(__file__).resolve().parents[2] / "shared/models/all-MiniLM-L6-v2-onnx"

PROSE = (
    "A train leaves Boston at 3 pm travelling at 60 miles per hour, and a second train "
    "leaves New York an hour later at 80 miles per hour on the same track. Which of the "
    "following best explains why the committee postponed the vote on the tax reform? "
    "(A) The budget office had not published its estimate. (B) Two members were absent. "
    "(C) The chair wanted more public hearings. (D) The bill had been amended overnight. "
    "Explain your reasoning step by step and give the final answer as a single letter. "
)


def text_of(chars: int) -> str:
    """A prompt-like text of exactly ``chars`` characters."""
    return (PROSE * (chars // len(PROSE) + 1))[:chars]
