"""Shared fixtures: fake OpenAI-compatible backends and a real sidecar on 127.0.0.1."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

with contextlib.suppress(ImportError):
    # onnxruntime crashes the process when first imported after usearch (which some
    # tests import directly): load it first
    import onnxruntime  # noqa: F401
from support.fake_openai import FakeOpenAI
from support.serve import ServerThread

from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings

SHARED_MODEL = Path(__file__).resolve().parents[2] / "shared/models/all-MiniLM-L6-v2-onnx"

# The tests never start the embedded local model unless they ask for it.
os.environ.setdefault("OPTIROUTE_LOCAL_MODEL", "off")
# Key stores and ledgers default to the user's data dir: never touch the real one
# (a key found there would also turn auth on for every test).
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="optiroute-tests-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], ignore_errors=True)
if SHARED_MODEL.is_dir():
    os.environ.setdefault("OPTIROUTE_EMBED_MODEL_PATH", str(SHARED_MODEL))


@pytest.fixture(autouse=True)
def _own_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data dir per test: what one test's gateway saves (the semantic cache's index and
    answers, ledgers) is never loaded by the next one."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def _fake_servers() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI(models=("small-up", "large-up")) as one, FakeOpenAI() as two:
        yield one, two


@pytest.fixture
def fake(_fake_servers: tuple[FakeOpenAI, FakeOpenAI]) -> FakeOpenAI:
    server = _fake_servers[0]
    server.reset()
    return server


@pytest.fixture
def fake2(_fake_servers: tuple[FakeOpenAI, FakeOpenAI]) -> FakeOpenAI:
    server = _fake_servers[1]
    server.reset()
    return server


def registry_yaml(primary: FakeOpenAI, secondary: FakeOpenAI | None = None) -> str:
    """Two tiers on the primary backend; the large model also on a second backend."""
    text = f"""
replace_defaults: true
backends:
  - name: primary
    base_url: "{primary.base_url}"
    api_key_env: TEST_BACKEND_KEY
    headers: {{x-backend-extra: "yes"}}
"""
    if secondary is not None:
        text += f"""  - name: secondary
    base_url: "{secondary.base_url}"
"""
    text += """models:
  - {name: small, upstream: small-up, backend: primary, tier: simple,
     input_per_mtok: 0.1, output_per_mtok: 0.4, quality: 0.3}
  - {name: large, upstream: large-up, backend: primary, tier: complex,
     input_per_mtok: 2.5, output_per_mtok: 10, quality: 0.9, context_window: 128000}
"""
    if secondary is not None:
        text += """  - {name: large, upstream: large-up, backend: secondary, tier: complex,
     input_per_mtok: 2.5, output_per_mtok: 10, quality: 0.9, context_window: 128000}
"""
    return text


@pytest.fixture
def make_settings(
    tmp_path: Path, fake: FakeOpenAI, fake2: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    monkeypatch.setenv("TEST_BACKEND_KEY", "sk-backend-secret-123456")

    def build(with_secondary: bool = True, **overrides: object) -> Settings:
        path = tmp_path / "registry.yaml"
        path.write_text(registry_yaml(fake, fake2 if with_secondary else None))
        options: dict[str, object] = {
            "config": str(path),
            "local_model": "off",
            "read_timeout_s": 2.0,
            "connect_timeout_s": 1.0,
        }
        options.update(overrides)
        return Settings.from_env({}, **options)

    return build


@pytest.fixture
def sidecar(make_settings: Callable[..., Settings]) -> Iterator[ServerThread]:
    with ServerThread(create_app(make_settings())) as server:
        yield server


@pytest.fixture
def sdk(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    """The openai SDK against the module's own ``gateway`` fixture (the adapter tests)."""
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as client:
        yield client
