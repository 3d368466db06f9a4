"""The examples run, so none can rot."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from support.serve import ServerThread

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_starlette_stages_example() -> None:
    with ServerThread(load("starlette_stages").app) as server:
        response = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "large", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 200
        assert (
            response.json()["choices"][0]["message"]["content"]
            == "small would answer a simple prompt"
        )
        assert response.headers["x-optiroute-tier"] == "simple"
        again = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "large", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert again.headers["x-optiroute-cache"] == "hit-exact"


def test_fastapi_mount_example(monkeypatch: pytest.MonkeyPatch, make_settings) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OPTIROUTE_CONFIG", make_settings().config)
    with ServerThread(load("fastapi_mount").app) as server:
        assert httpx.get(server.url + "/hello").json() == {"hello": "world"}
        response = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.json()["choices"][0]["message"]["content"] == "echo: hi"


def test_outbound_example(monkeypatch: pytest.MonkeyPatch, make_settings, capsys) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    monkeypatch.setenv("OPTIROUTE_CONFIG", make_settings().config)
    asyncio.run(load("outbound_openai").main())
    out = capsys.readouterr().out
    assert "echo: Say hello in French." in out and "echo: Count to five." in out
