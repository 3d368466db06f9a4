"""Debian packages a test needs (prometheus, chromium): found, or installed with apt-get."""

from __future__ import annotations

import os
import shutil
import subprocess


def ensure_binary(binary: str, package: str, timeout_s: float = 900) -> str | None:
    """The binary's path, installing ``package`` when it is missing and apt-get can run.

    None when it cannot be had here (not root, no apt-get, or the install failed), so
    the caller can skip cleanly.
    """
    found = shutil.which(binary)
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", package]
    for step in (install, ["apt-get", "update", "-qq"], install):
        try:
            done = subprocess.run(step, env=env, capture_output=True, timeout=timeout_s)
        except (OSError, subprocess.SubprocessError):
            return None
        if step is install and done.returncode == 0:
            break
    return shutil.which(binary)
