"""A real Prometheus server on 127.0.0.1 (free port, temporary storage) for tests."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    """``prometheus`` scraping ``targets`` every ``interval``, with the given rule files."""

    def __init__(
        self,
        binary: str,
        config: dict[str, Any],
        targets: list[str],
        interval: str = "1s",
        rule_files: list[str] | None = None,
    ) -> None:
        self.binary = binary
        self.folder = Path(tempfile.mkdtemp(prefix="optiroute-prometheus-"))
        config = dict(config)
        config["global"] = {
            **config.get("global", {}),
            "scrape_interval": interval,
            "evaluation_interval": interval,
        }
        config["rule_files"] = rule_files or []
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": targets}]
        self.config_path = self.folder / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> PrometheusServer:
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                error = self.process.stderr.read() if self.process.stderr else b""
                self.stop()
                raise RuntimeError(f"prometheus did not start: {error.decode()[-2000:]}")
            time.sleep(0.1)

    def query(self, expr: str) -> dict[str, Any]:
        """The API's answer to an instant query (status, data or error)."""
        answer = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        result: dict[str, Any] = answer.json()
        return result

    def value(self, expr: str) -> float | None:
        """A one-element instant vector's value, None when the result is empty."""
        result = self.query(expr)
        assert result["status"] == "success", (expr, result)
        rows = result["data"]["result"]
        if not rows:
            return None
        assert len(rows) == 1, (expr, rows)
        return float(rows[0]["value"][1])

    def wait_for(self, expr: str, expected: float, timeout_s: float = 20) -> float | None:
        """Poll until the query returns ``expected`` (new scrapes land every interval)."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = self.value(expr)
            if got is not None and abs(got - expected) <= 1e-9 * max(1.0, abs(expected)):
                return got
            if time.monotonic() > deadline:
                return got
            time.sleep(0.25)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
