"""Several sidecar processes sharing one real redis-server behave as one gateway.

Three real ``python -m optiroute_mw.cli serve`` subprocesses, each on its own port
with its own data dir (so its own ledger), the same registry (a fake OpenAI
backend), the same key file and one ``OPTIROUTE_REDIS_URL``.  What must hold:

* a rate limit of N per minute is N across the replicas, not N per replica;
* an answer cached through one replica is an exact hit on another (and, with the
  semantic layer, a paraphrase is a semantic hit there within a bounded delay);
* a month's spend is shared: a budget used up through one replica refuses on another;
* the ledger is per replica (each process writes its own rows);
* Redis stopped and restarted mid-run fails no call, and every replica goes back to it.

The cache tests switch themselves on when the Redis cache store and the semantic
layer exist in ``optiroute_mw.cache`` (feature probes below); until then they skip.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis
from support.fake_openai import FakeOpenAI
from support.redis_server import RedisServer, redis_or_skip
from support.serve import ServerThread

import optiroute_mw.cache
from optiroute_mw.ingress import Tenant
from optiroute_mw.ingress.budgets import HARD, OK, BudgetBook, RedisSpend
from optiroute_mw.ingress.keys import KeyStore
from optiroute_mw.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MASTER = "sk-master-replicas-test-0123456789"
SETTING_FIELDS = {f.name for f in msgspec.structs.fields(Settings)}
SEMANTIC_SYNC_S = 0.5


# -- feature probes: the tests below turn on by themselves when these land ---------------


PACKAGE = Path(optiroute_mw.cache.__file__).parents[1]


def _wiring_sources() -> str:
    """The modules that assemble the stack, and the cache modules they import."""
    files = [*PACKAGE.glob("*.py"), PACKAGE / "cache/middleware.py"]
    text = "\n".join(f.read_text(encoding="utf-8") for f in files if f.is_file())
    used = set(re.findall(r"cache\.(\w+)", text)) | set(re.findall(r"from \.(\w+) import", text))
    extra = [PACKAGE / "cache" / f"{name}.py" for name in used]
    return text + "\n".join(f.read_text(encoding="utf-8") for f in extra if f.is_file())


def redis_cache_store() -> bool:
    """A cache store class with 'Redis' in its name in optiroute_mw.cache, used by the stack."""
    names: set[str] = set()
    for info in pkgutil.iter_modules(optiroute_mw.cache.__path__):
        if "store" not in info.name and "redis" not in info.name:
            continue
        module = importlib.import_module(f"optiroute_mw.cache.{info.name}")
        names |= {n for n, v in vars(module).items() if "Redis" in n and isinstance(v, type)}
    wiring = _wiring_sources()
    return any(name in wiring for name in names)


def semantic_replica_sync() -> bool:
    """The semantic layer's Redis sync (a semantic sync setting, used by the stack)."""
    if "semantic_sync_s" not in SETTING_FIELDS or not redis_cache_store():
        return False
    wiring = _wiring_sources()
    return "semantic_sync_s" in wiring or "SemanticLog" in wiring


def serve_has_workers() -> bool:
    return "--workers" in (ROOT / "optiroute_mw/cli.py").read_text(encoding="utf-8")


# -- the replicas ------------------------------------------------------------------------


REGISTRY = """\
replace_defaults: true
backends:
  - {{name: primary, base_url: "{url}"}}
models:
  - {{name: small, upstream: small-up, backend: primary, tier: simple,
     input_per_mtok: 0.1, output_per_mtok: 0.4, quality: 0.3}}
  - {{name: large, upstream: large-up, backend: primary, tier: complex,
     input_per_mtok: 2.5, output_per_mtok: 10, quality: 0.9}}
"""


class Replica:
    """One ``optiroute-mw serve`` subprocess on a free port of 127.0.0.1."""

    def __init__(self, name: str, env: dict[str, str], data_dir: Path) -> None:
        self.name = name
        self.port = ServerThread(lambda *a: None).port  # type: ignore[arg-type]
        self.data_dir = data_dir
        self.log = data_dir / "sidecar.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **env,
            "OPTIROUTE_PORT": str(self.port),
            "OPTIROUTE_DATA_DIR": str(data_dir),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "optiroute_mw.cli", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} never became ready: {self.log.read_text()[-2000:]}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample on /metrics (0 when absent)."""
        prefix = name + (("{" + labels + "}") if labels else "")
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(prefix + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@dataclass
class Cluster:
    redis: RedisServer
    replicas: list[Replica]
    keys: dict[str, str]  # name -> key
    key_ids: dict[str, str]  # name -> key id
    fake: FakeOpenAI
    counter: list[int] = field(default_factory=lambda: [0])

    def unique(self, text: str) -> str:
        self.counter[0] += 1
        return f"{text} {self.counter[0]}"


def chat(
    url: str, content: str, key: str, model: str = "small", timeout: float = 10, **headers: str
) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    headers = {"x-api-key": key, **headers}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=timeout)


def base_env(registry: Path, redis_url: str, keys_db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIROUTE_")}
    env.update(
        {
            "OPTIROUTE_CONFIG": str(registry),
            "OPTIROUTE_REDIS_URL": redis_url,
            "OPTIROUTE_KEYS_DB": str(keys_db),
            "OPTIROUTE_MASTER_KEY": MASTER,
            "OPTIROUTE_LOCAL_MODEL": "off",
            "OPTIROUTE_LOG_LEVEL": "warning",
            "OPTIROUTE_LOG_FORMAT": "json",
            "OPTIROUTE_SHUTDOWN_GRACE_S": "2",
            "OPTIROUTE_READ_TIMEOUT_S": "5",
        }
    )
    if "semantic_sync_s" in SETTING_FIELDS:
        env["OPTIROUTE_SEMANTIC_SYNC_S"] = str(SEMANTIC_SYNC_S)
    # the semantic layer, when it exists, uses the shared test model (set by conftest)
    if os.environ.get("OPTIROUTE_EMBED_MODEL_PATH"):
        env["OPTIROUTE_EMBED_MODEL_PATH"] = os.environ["OPTIROUTE_EMBED_MODEL_PATH"]
    return env


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, _fake_servers: tuple[FakeOpenAI, FakeOpenAI]
) -> Iterator[Cluster]:
    fake = _fake_servers[0]
    root = tmp_path_factory.mktemp("replicas")
    registry = root / "registry.yaml"
    registry.write_text(REGISTRY.format(url=fake.base_url))
    # every key exists before the replicas start: none waits for a key-file refresh
    store = KeyStore(str(root / "keys.db"))
    specs: dict[str, dict[str, Any]] = {
        "limited": {"rpm": 4},
        "plain": {},
        "budget": {"budget_usd": 5e-6},  # one call costs 1.9e-6 (see the budget test)
        "steady": {"rpm": 100_000, "soft_budget_usd": 1000.0},
    }
    keys, ids = {}, {}
    for name, spec in specs.items():
        key, record = store.create(name, **spec)
        keys[name], ids[name] = key, record.id
    store.close()
    with redis_or_skip() as server:
        env = base_env(registry, server.url, root / "keys.db")
        replicas = [Replica(name, env, root / name) for name in ("a", "b", "c")]
        try:
            for replica in replicas:  # start together, wait together: one start-up time
                replica.start()
            for replica in replicas:
                replica.wait_ready()
            yield Cluster(server, replicas, keys, ids, fake)
        finally:
            for replica in replicas:
                replica.stop()


# -- rate limits ---------------------------------------------------------------------------


def test_a_rate_limit_holds_across_replicas(cluster: Cluster) -> None:
    key = cluster.keys["limited"]
    order = [cluster.replicas[i % 3] for i in range(9)]
    responses = [chat(r.url, cluster.unique("limited"), key) for r in order]
    statuses = [r.status_code for r in responses]
    # 4 per minute in all, whichever replica is asked: not 4 per replica (12)
    assert statuses.count(200) == 4 and statuses.count(429) == 5, statuses
    assert statuses[:4] == [200] * 4
    assert [r.headers["x-ratelimit-remaining-requests"] for r in responses[:4]] == [
        "3",
        "2",
        "1",
        "0",
    ]
    refused = responses[4]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1


# -- the exact and semantic cache ----------------------------------------------------------


@pytest.mark.skipif(
    not redis_cache_store(),
    reason="no Redis cache store in optiroute_mw.cache yet: replicas do not share entries",
)
def test_an_exact_cache_entry_is_shared_across_replicas(cluster: Cluster) -> None:
    a, b, c = cluster.replicas
    key = cluster.keys["plain"]
    prompt = cluster.unique("What is the boiling point of water at sea level?")
    first = chat(a.url, prompt, key)
    assert first.status_code == 200 and first.headers["x-optiroute-cache"] == "miss"
    hits = cluster.fake.hits
    time.sleep(0.3)  # stored as the answer completes: allow a moment
    second = chat(b.url, prompt, key)
    assert second.headers["x-optiroute-cache"] == "hit-exact"
    assert second.json()["choices"] == first.json()["choices"]
    third = chat(c.url, prompt, key)
    assert third.headers["x-optiroute-cache"] == "hit-exact"
    assert cluster.fake.hits == hits  # neither hit reached the backend


@pytest.mark.skipif(
    not semantic_replica_sync(),
    reason="the semantic layer does not sync through Redis yet (no semantic setting or store)",
)
@pytest.mark.skipif(
    not os.environ.get("OPTIROUTE_EMBED_MODEL_PATH"),
    reason="no local embedding model (../shared/models/all-MiniLM-L6-v2-onnx)",
)
def test_a_semantic_entry_is_found_by_another_replica(cluster: Cluster) -> None:
    a, b, _ = cluster.replicas
    key = cluster.keys["plain"]
    first = chat(a.url, "How do I reset my online banking password?", key)
    assert first.status_code == 200
    # a paraphrase through another replica: a semantic hit once the entry has synced
    # (every OPTIROUTE_SEMANTIC_SYNC_S); asked once after that bound, since a miss
    # would store the paraphrase on b itself
    time.sleep(4 * SEMANTIC_SYNC_S)
    second = chat(b.url, "How can I reset my online banking password?", key)
    assert second.headers["x-optiroute-cache"] == "hit-semantic", second.headers
    assert (
        second.json()["choices"][0]["message"]["content"]
        == (first.json()["choices"][0]["message"]["content"])
    )


# -- budgets and the ledger ----------------------------------------------------------------


async def test_budget_books_share_month_spend_through_redis() -> None:
    with redis_or_skip() as server:
        tenant = Tenant(id="t", key_id="k1", budget_usd=1.0)
        one = BudgetBook(shared=RedisSpend(server.url), sync_s=60)
        two = BudgetBook(shared=RedisSpend(server.url), sync_s=60)
        errors: list[Exception] = []
        three = BudgetBook(shared=RedisSpend(server.url), sync_s=60, on_error=errors.append)
        try:
            assert one.state(tenant) == two.state(tenant) == OK
            one.add("key:k1", 0.6)
            two.add("key:k1", 0.5)
            assert one.state(tenant) == two.state(tenant) == OK  # not synced yet: local
            await one.sync()
            await two.sync()
            await one.sync()
            assert one.spent("key:k1") == pytest.approx(1.1)
            assert one.state(tenant) == two.state(tenant) == HARD
            key = f"optiroute:spend:{one.month}:key:k1"
            assert float(redis.Redis.from_url(server.url).get(key) or 0) == pytest.approx(1.1)
            # Redis gone: spend stays local and waits; nothing is lost when it returns
            three.load({"key:k1": 0.2}, three.month)  # its own ledger
            server.stop()
            three.add("key:k1", 0.3)
            await three.sync()
            assert errors and three.spent("key:k1") == pytest.approx(0.5)
            server.start()  # empty, as after a restart without persistence
            await three.sync()
            assert three.spent("key:k1") == pytest.approx(0.5)
            assert float(redis.Redis.from_url(server.url).get(key) or 0) == pytest.approx(0.3)
            # a Redis that lost its data never lowers what a replica knows it spent
            await one.sync()
            assert one.spent("key:k1") == pytest.approx(1.1)
        finally:
            for book in (one, two, three):
                await book.aclose()


def test_a_budget_used_up_on_one_replica_refuses_on_another(cluster: Cluster) -> None:
    a, b, _ = cluster.replicas
    key = cluster.keys["budget"]
    pin = {"x-optiroute-model": "small"}
    # each call: 3 prompt words + 4 answer words on 'small' (0.1 / 0.4 per Mtok) = 1.9e-6;
    # the budget is 5e-6, so a replica on its own refuses only its 4th call
    spent = [chat(a.url, f"budget call {i}", key, **pin) for i in range(3)]
    assert [r.status_code for r in spent] == [200, 200, 200]
    assert float(spent[0].headers["x-optiroute-cost"]) == pytest.approx(1.9e-6)
    assert chat(a.url, "budget call 3", key, **pin).status_code == 402
    # b has spent nothing itself.  It reads a subject's shared total from its first
    # call on (its first call may still pass), in sync rounds of 1 s.  On its own it
    # would answer three calls (its own spend before each: 0, 1.9e-6, 3.8e-6 < 5e-6).
    statuses: list[int] = []
    for i in range(3):
        statuses.append(chat(b.url, f"budget call {4 + i}", key, **pin).status_code)
        if statuses[-1] == 402:
            break
        time.sleep(1.5)
    assert statuses[-1] == 402, statuses
    refused = chat(b.url, "budget call 9", key, **pin)
    assert refused.json()["error"]["code"] == "budget_exceeded"


def test_the_ledger_is_per_replica(cluster: Cluster) -> None:
    a, b, _ = cluster.replicas
    key = cluster.keys["plain"]
    on_a = chat(a.url, cluster.unique("ledger"), key).headers["x-request-id"]
    on_b = chat(b.url, cluster.unique("ledger"), key).headers["x-request-id"]
    auth = {"authorization": f"Bearer {MASTER}"}

    def rows(replica: Replica) -> set[str]:
        got = httpx.get(replica.url + "/optiroute/admin/ledger?limit=1000", headers=auth)
        assert got.status_code == 200
        return {row["request_id"] for row in got.json()["data"]}

    # each replica writes its own SQLite ledger: analytics are per replica; the
    # fleet-wide view is Prometheus (summed over replicas) and the shared spend
    assert on_a in rows(a) and on_a not in rows(b)
    assert on_b in rows(b) and on_b not in rows(a)


# -- Redis stopped and restarted mid-run ---------------------------------------------------


def test_redis_restart_mid_run_fails_no_call(cluster: Cluster) -> None:
    key, key_id = cluster.keys["steady"], cluster.key_ids["steady"]
    bucket = f"optiroute:rl:key:{key_id}:rpm"
    results: list[tuple[str, int, float]] = []
    stop = threading.Event()

    def load() -> None:
        i = 0
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                replica = cluster.replicas[i % 3]
                body = {
                    "model": "small",
                    "messages": [{"role": "user", "content": cluster.unique("steady")}],
                }
                try:
                    status = client.post(
                        replica.url + "/v1/chat/completions",
                        json=body,
                        headers={"x-api-key": key},
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                results.append((replica.name, status, time.monotonic()))
                i += 1
                time.sleep(0.02)

    before = sum(r.metric("optiroute_side_system_errors_total", 'system="ratelimit"')
                 for r in cluster.replicas)  # fmt: skip
    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        time.sleep(0.8)
        assert redis.Redis.from_url(cluster.redis.url).exists(bucket)
        cluster.redis.stop()
        down_at = time.monotonic()
        time.sleep(1.5)
        cluster.redis.start()  # same port, empty
        up_at = time.monotonic()
        time.sleep(2.5)  # past the limiter's 1 s local spell and a budget sync round
    finally:
        stop.set()
        worker.join(15)
    failed = [(name, status) for name, status, _ in results if status != 200]
    assert not failed, failed
    during = [name for name, _, at in results if down_at < at < up_at]
    assert set(during) == {"a", "b", "c"}  # every replica served while Redis was away
    after = sum(r.metric("optiroute_side_system_errors_total", 'system="ratelimit"')
                for r in cluster.replicas)  # fmt: skip
    assert after > before  # local-only spells were counted
    # every replica is back on Redis: each call moves the shared bucket's clock
    client = redis.Redis.from_url(cluster.redis.url)
    for replica in cluster.replicas:
        stamp = client.hget(bucket, "ts")
        time.sleep(0.005)
        assert chat(replica.url, cluster.unique("rejoined"), key).status_code == 200
        assert client.hget(bucket, "ts") != stamp, f"{replica.name} did not go back to Redis"


# -- several workers on one host -----------------------------------------------------------


@pytest.mark.skipif(not serve_has_workers(), reason="'optiroute-mw serve --workers' not there yet")
def test_metrics_add_up_across_workers(
    tmp_path: Path, _fake_servers: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY.format(url=_fake_servers[0].base_url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIROUTE_")}
    env.update({"OPTIROUTE_CONFIG": str(registry), "OPTIROUTE_LOCAL_MODEL": "off",
                "OPTIROUTE_LOG_LEVEL": "warning", "OPTIROUTE_SHUTDOWN_GRACE_S": "2"})  # fmt: skip
    # prometheus-client's multiprocess mode wants an empty directory of its own
    (tmp_path / "metrics").mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    replica = Replica("workers", env, tmp_path / "data")
    replica.process = subprocess.Popen(
        [sys.executable, "-m", "optiroute_mw.cli", "serve", "--workers", "2"],
        env=replica.env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        replica.wait_ready()
        calls = 20
        with httpx.Client(timeout=10) as client:  # new connections spread over the workers
            for i in range(calls):
                body = {"model": "small", "messages": [{"role": "user", "content": f"w {i}"}]}
                response = client.post(
                    replica.url + "/v1/chat/completions",
                    json=body,
                    headers={"connection": "close"},
                )
                assert response.status_code == 200
        # whichever worker answers /metrics, it counts every worker's requests
        for _ in range(4):
            text = httpx.get(replica.url + "/metrics", headers={"connection": "close"}).text
            total = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("optiroute_requests_total{")
            )
            assert total == calls
    finally:
        replica.stop()
