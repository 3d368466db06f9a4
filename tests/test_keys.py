"""API keys: the CLI lifecycle, hash-only storage, constant-time compare, 401s, tenants."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.types import Scope
from support.fake_openai import FakeOpenAI
from support.serve import ServerThread

import optiroute_mw
from optiroute_mw.cli import main
from optiroute_mw.ingress import Tenant
from optiroute_mw.ingress.keys import KeyStore, hash_key
from optiroute_mw.ledger.store import read_rows
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings


def chat(url: str, content: str = "what is 2+2", model: str = "small", **headers: str) -> Any:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


@pytest.fixture
def keys_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys.db"
    monkeypatch.setenv("OPTIROUTE_KEYS_DB", str(path))
    monkeypatch.setenv("OPTIROUTE_LOCAL_MODEL", "off")
    return path


def test_cli_lifecycle_stores_only_a_hash(
    keys_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = cli(capsys, "keys", "create", "alice", "--rpm", "5", "--models", "small", "--json")
    assert code == 0
    created = json.loads(out)
    key = created.pop("key")
    assert key.startswith("sk-or-" + created["id"] + "_") and len(key) > 50
    assert created["tenant"] == "alice" and created["rpm"] == 5
    assert created["allowed_models"] == ["small"]

    code, out = cli(capsys, "keys", "list", "--json")
    listed = json.loads(out)
    assert [k["id"] for k in listed] == [created["id"]]
    assert key not in out and "hash" not in listed[0]

    raw = keys_db.read_bytes()
    secret = key.split("_", 1)[1]
    assert key.encode() not in raw and secret.encode() not in raw
    assert hash_key(key).encode() in raw  # the hash, and only the hash, is kept

    assert cli(capsys, "keys", "revoke", created["id"])[0] == 0
    listed = json.loads(cli(capsys, "keys", "list", "--json")[1])
    assert listed[0]["revoked_at"] is not None
    assert json.loads(cli(capsys, "keys", "list", "--active", "--json")[1]) == []
    assert cli(capsys, "keys", "revoke", "nosuchkey000")[0] == 1
    assert cli(capsys, "keys", "create", "bob", "--rpm", "0")[0] == 2  # a bad limit is refused


def test_verify_compares_in_constant_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(str(tmp_path / "keys.db"))
    key, record = store.create("alice")
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("optiroute_mw.ingress.keys.hmac.compare_digest", recording)
    assert store.verify(key) == record
    assert calls[-1] == (hash_key(key), record.hash)
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert store.verify(tampered) is None
    assert store.verify("sk-or-nosuchkey0000_whatever") is None
    assert len(calls) == 3  # every check, hit or miss, goes through compare_digest


def test_sidecar_rejects_missing_wrong_and_revoked_keys(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    fake: FakeOpenAI,
) -> None:
    store = KeyStore(str(tmp_path / "keys.db"))
    key, record = store.create("alice")
    settings = make_settings(keys_db=store.path, ledger_path=str(tmp_path / "ledger.db"))
    with structlog.testing.capture_logs() as logs, ServerThread(create_app(settings)) as server:
        missing = chat(server.url)
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "missing_api_key"
        assert missing.json()["error"]["type"] == "authentication_error"
        wrong = chat(server.url, authorization="Bearer sk-or-000000000000_nope")
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert fake.hits == 0  # nothing reached a backend

        assert chat(server.url, authorization=f"Bearer {key}").status_code == 200
        assert chat(server.url, "what is 3+3", **{"x-api-key": key}).status_code == 200
        # the client's key goes nowhere: not to the backend, not to the metrics
        assert all(key not in json.dumps(r.headers) for r in fake.requests)
        assert key not in httpx.get(server.url + "/metrics").text

        store.revoke(record.id)  # as another process would: the sidecar notices on its own
        deadline = time.monotonic() + 10
        while (revoked := chat(server.url, "what is 4+4", **{"x-api-key": key})).status_code == 200:
            assert time.monotonic() < deadline, "revocation never took effect"
            time.sleep(0.1)
        assert revoked.status_code == 401
        assert revoked.json()["error"]["code"] == "revoked_api_key"
    assert logs and key not in json.dumps(logs, default=str)  # nor to the log lines
    rows = read_rows(str(tmp_path / "ledger.db"))
    assert {r.tenant for r in rows} == {"alice"} and {r.key_id for r in rows} == {record.id}


def test_auth_is_off_until_keys_exist_or_it_is_required(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = str(tmp_path / "keys.db")
    required = make_settings(keys_db=str(tmp_path / "none.db"), require_auth=True)
    with ServerThread(create_app(required)) as server:
        assert chat(server.url).status_code == 401
    with ServerThread(create_app(make_settings(keys_db=path))) as server:
        assert chat(server.url, authorization="Bearer anything").status_code == 200
        assert not Path(path).exists()  # no key file is made just by serving
        KeyStore(path).create("first")  # from the CLI, say: auth turns on by itself
        deadline = time.monotonic() + 10
        while chat(server.url, "what is 5+5").status_code == 200:
            assert time.monotonic() < deadline, "the new key never turned auth on"
            time.sleep(0.1)
        assert chat(server.url, "what is 6+6").status_code == 401


def test_key_carries_allowed_models_and_default_mode(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    store = KeyStore(str(tmp_path / "keys.db"))
    narrow, _ = store.create("narrow", allowed_models=["small"])
    picky, _ = store.create("picky", default_mode="quality")
    with ServerThread(create_app(make_settings(keys_db=store.path))) as server:
        refused = chat(server.url, model="large", **{"x-api-key": narrow})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "model_not_allowed"
        assert chat(server.url, model="auto", **{"x-api-key": narrow}).status_code == 403
        assert chat(server.url, model="small", **{"x-api-key": narrow}).status_code == 200
        # balanced would pick the cheap model for this prompt; the key's mode says quality
        answer = chat(server.url, model="large", **{"x-api-key": picky})
        assert answer.headers["x-optiroute-model"] == "large"


def test_host_app_supplies_the_tenant_in_middleware_mode(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    def resolver(scope: Scope) -> Tenant | None:
        for name, value in scope["headers"]:
            if name == b"x-user" and value == b"broken":
                raise RuntimeError("the host app's auth failed")
            if name == b"x-user":
                return Tenant(id="user-" + value.decode(), rpm=1)
        return None

    settings = make_settings(ledger_path=str(tmp_path / "ledger.db"), require_auth=True)
    app = optiroute_mw.wrap(Starlette(), settings, tenant_resolver=resolver)
    with ServerThread(app) as server:
        assert chat(server.url).status_code == 401  # no user, no key
        assert chat(server.url, **{"x-user": "42"}).status_code == 200
        limited = chat(server.url, "what is 3+3", **{"x-user": "42"})
        assert limited.status_code == 429  # the tenant's own limit applies
        assert chat(server.url, **{"x-user": "7"}).status_code == 200
        broken = chat(server.url, **{"x-user": "broken"})
        assert broken.status_code == 500 and broken.json()["error"]["code"] == "internal_error"
    rows = read_rows(str(tmp_path / "ledger.db"))
    assert [(r.tenant, r.key_id, r.status) for r in rows] == [
        ("user-42", None, 200),
        ("user-42", None, 429),
        ("user-7", None, 200),
    ]
