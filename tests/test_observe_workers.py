"""``optiroute-mw serve --workers 2``: whichever worker answers /metrics, counters are summed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import registry_yaml
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from support.fake_openai import FakeOpenAI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def requests_total(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "optiroute_requests"
        for sample in family.samples
        if sample.name == "optiroute_requests_total"
    )


def per_worker(folder: Path) -> dict[str, float]:
    """Each worker's own count of requests, read from its file in the metrics folder."""
    counts: dict[str, float] = {}
    for path in folder.glob("counter_*.db"):
        pid = path.stem.split("_")[1]
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if '"optiroute_requests_total"' in key:
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


@pytest.fixture
def two_workers(tmp_path: Path, fake: FakeOpenAI) -> Iterator[tuple[str, Path]]:
    config = tmp_path / "registry.yaml"
    config.write_text(registry_yaml(fake))
    folder = tmp_path / "prom"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIROUTE_")}
    env.update(
        OPTIROUTE_CONFIG=str(config),
        OPTIROUTE_LOCAL_MODEL="off",
        OPTIROUTE_DATA_DIR=str(tmp_path / "data"),
        OPTIROUTE_SEMANTIC="false",
        OPTIROUTE_LOG_LEVEL="warning",
        OPTIROUTE_CACHE="false",
        PROMETHEUS_MULTIPROC_DIR=str(folder),
        TEST_BACKEND_KEY="sk-backend-secret-123456",
    )
    command = [sys.executable, "-m", "optiroute_mw.cli", "serve", "--workers", "2"]
    process = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(process.stderr.read().decode() if process.stderr else "")
            time.sleep(0.1)
        yield url, folder
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_two_workers_sum_their_counters(two_workers: tuple[str, Path]) -> None:
    url, folder = two_workers

    def call(i: int) -> int:
        body = {"model": "large", "messages": [{"role": "user", "content": f"question {i}"}]}
        # a fresh connection each time, so the kernel spreads them over both workers
        return httpx.post(url + "/v1/chat/completions", json=body, timeout=10).status_code

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while sent < 400:
            assert set(pool.map(call, range(sent, sent + 40))) == {200}
            sent += 40
            if len([n for n in per_worker(folder).values() if n > 0]) == 2:
                break
    counts = per_worker(folder)
    assert len(counts) == 2 and all(n > 0 for n in counts.values()), counts
    assert sum(counts.values()) == sent
    scrapes = {requests_total(httpx.get(url + "/metrics").text) for _ in range(6)}
    assert scrapes == {sent}  # every scrape, whichever worker answered it, sums both
