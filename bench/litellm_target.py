"""LiteLLM proxy as a second target for ``overhead.py --vs litellm``.

LiteLLM lives in its own virtualenv (``bench/.venvs/litellm``, git-ignored), made
once on first use and reused afterwards, so its many pins never meet the
project's.  The version is pinned: the comparison should not drift with every
release, and a pin keeps a pulled or compromised release from being picked up by
accident (LiteLLM has had both).

Everything here is offline and loopback only: the proxy reads its model cost map
from the package instead of fetching it, telemetry is off, there is no database
and no master key, and the only backend is the mock on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venvs" / "litellm"
LITELLM_VERSION = "1.106.12"
REQUIREMENT = f"litellm[proxy]=={LITELLM_VERSION}"
# the proxy imports a lot (first start on 2 cores: tens of seconds)
READY_TIMEOUT_S = 180.0
READY_PATH = "/health/liveliness"
INSTALL_TIMEOUT_S = 1200.0

CONFIG = """\
model_list:
  - model_name: mock-large
    litellm_params: {{model: openai/mock-large, api_base: "{api_base}", api_key: dummy}}
  - model_name: mock-small
    litellm_params: {{model: openai/mock-small, api_base: "{api_base}", api_key: dummy}}
litellm_settings:
  telemetry: false
  drop_params: true
general_settings: {{}}
"""


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def executable() -> Path:
    return VENV / "bin" / "litellm"


def installed_version() -> str | None:
    """The LiteLLM version in the bench venv, or None when there is none."""
    if not executable().exists():
        return None
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    done = subprocess.run(
        [str(_venv_python()), "-c", probe], capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_installed(log: Callable[[str], None] = print) -> str:
    """Make the venv and install the pinned proxy unless it is already there.

    Returns the installed version.  Uses the PyPI client only (``pip``), like any
    other install of the project.
    """
    version = installed_version()
    if version == LITELLM_VERSION:
        return version
    log(f"installing {REQUIREMENT} into {VENV} (once; later runs reuse it)")
    if not _venv_python().exists():
        # from the base interpreter, so nothing of the project's venv is shared
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True, timeout=300)
    pip = [str(_venv_python()), "-m", "pip", "--disable-pip-version-check", "-q"]
    # output kept, shown only on failure: pip's warnings would bury the run's header
    done = subprocess.run(
        [*pip, "install", REQUIREMENT], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {REQUIREMENT} failed:\n{done.stderr[-2000:]}")
    version = installed_version()
    if version != LITELLM_VERSION:
        raise RuntimeError(f"LiteLLM install in {VENV} gave version {version!r}")
    return version


def write_config(workdir: Path, mock_port: int) -> Path:
    path = workdir / "litellm.yaml"
    path.write_text(CONFIG.format(api_base=f"http://127.0.0.1:{mock_port}/v1"))
    return path


def command(config: Path, port: int) -> list[str]:
    return [
        str(executable()),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]


def env(workdir: Path) -> dict[str, str]:
    """The caller's environment without anything that would make the proxy reach
    out (keys, proxies, a database URL) or change its mode, plus the offline flags."""
    dropped = ("LITELLM_", "DATABASE_URL", "OPENAI_", "HTTP_PROXY", "HTTPS_PROXY")
    out = {k: v for k, v in os.environ.items() if not k.upper().startswith(dropped)}
    out.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the cost map at import
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOG": "ERROR",
            "LITELLM_MODE": "PRODUCTION",  # no .env loading
            "DISABLE_SCHEMA_UPDATE": "True",
            # without a key this version refuses to start; the bench wants no auth
            # step in the path (as the sidecar has none), and it listens on loopback only
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
            "NO_PROXY": "127.0.0.1,localhost",
            "HOME": str(workdir),  # any cache it writes lands in the run's temp dir
            "PYTHONUNBUFFERED": "1",
        }
    )
    return out
