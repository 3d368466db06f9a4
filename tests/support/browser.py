"""Headless Chromium (Debian's package) driven by Playwright, without a browser download."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .debian import ensure_binary

# the flags this machine needs: its closed network refuses Chromium's background calls
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return ensure_binary("chromium", "chromium")


@contextmanager
def browser_context(executable: str, **options: Any) -> Iterator[Any]:
    """A Playwright browser context on a fresh profile; never ``playwright install``."""
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory(prefix="optiroute-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=CHROMIUM_FLAGS, **options
        )
        try:
            yield context
        finally:
            context.close()
