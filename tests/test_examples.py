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


def test_anthropic_client_example(
    sidecar: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    load("anthropic_client").main(sidecar.url)
    out = capsys.readouterr().out.splitlines()  # log lines of the in-process sidecar too
    assert "echo: What is the capital of France?" in out
    assert "answered by small on primary | cache: miss" in out
    assert "echo: Count to five." in out


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as ``docker run --env-file`` reads them (no quotes, no export)."""
    import re

    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(\S*)", line)
        assert match, f"{path.name}:{number}: not KEY=value: {line!r}"
        assert not match[2].startswith(("'", '"')), f"{path.name}:{number}: quoted value"
        values[match[1]] = match[2]
    return values


def test_sidecar_env_example(
    make_settings,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    import os
    import subprocess
    import time
    import warnings

    from optiroute_mw.registry import build_registry
    from optiroute_mw.settings import Settings

    values = read_env_file(EXAMPLES / "sidecar.env")
    assert values and all(name.startswith("OPTIROUTE_") for name in values)
    # every line is a real setting with a valid value, the registry it names included
    monkeypatch.chdir(EXAMPLES.parent)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        settings = Settings.from_env(values)
    assert settings.default_mode == values["OPTIROUTE_DEFAULT_MODE"]
    assert {m.name for m in build_registry(settings).models} >= {"llama3.2"}
    # the sidecar started with the file, its registry swapped for the test backend
    port = ServerThread(lambda *a: None).port  # type: ignore[arg-type]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIROUTE_")}
    env.update(values)
    env.update(
        OPTIROUTE_CONFIG=str(make_settings().config),
        OPTIROUTE_PORT=str(port),
        OPTIROUTE_LOCAL_MODEL="off",  # the file's 'auto' would start the embedded model
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "optiroute_mw.cli", "serve"],
        env=env,
        cwd=EXAMPLES.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the sidecar did not become ready"
            time.sleep(0.05)
        response = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "large", "messages": [{"role": "user", "content": "hello env"}]},
        )
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "echo: hello env"
        assert response.headers["x-optiroute-cache"] == "miss"
    finally:
        process.terminate()
        process.wait(15)
