"""What the sidecar adds: the same load sent straight to a mock upstream and through
``optiroute-mw serve`` in front of it, side by side.

One run:

1. starts ``bench/mock_upstream.py`` (pinned to the load generator's core),
2. measures the mock directly,
3. for each outbound engine (``--engine aiohttp|httpx|both``) starts the sidecar
   pinned to its own core (``taskset -c 0``) with a registry pointing at the mock
   and measures it the same way: the stack as shipped (exact cache, rule router,
   breaker, metrics, one JSON log line per request into a log file), with the
   semantic cache off (it would load an embedding model),
4. with ``--vs litellm`` starts the LiteLLM proxy (pinned version, own venv made on
   first use, see ``litellm_target.py``) on the same core in front of the same mock
   and measures the same points,
5. with ``--vs floor`` starts ``floor_app.py`` on the same core: uvicorn and aiohttp
   with nothing between them, on the sidecar's server settings, so the table shows
   what the server and client alone cost next to what the whole stack costs,
6. prints a table (and with ``--json`` one JSON object per point).

The load generator is ``wrk`` when it is installed (a Lua script makes every
prompt unique and reads the ``x-optiroute-*`` headers), else an asyncio + aiohttp
generator in a subprocess pinned with ``os.sched_setaffinity``.  Each point is a
closed loop of N connections for ``--seconds``.  Run it with the project's venv:

    .venv/bin/python bench/overhead.py                 # concurrency 1 and 16, 10 s a point
    .venv/bin/python bench/overhead.py --full          # and 64
    .venv/bin/python bench/overhead.py --vs litellm    # and LiteLLM proxy side by side
    .venv/bin/python bench/overhead.py --vs floor      # and the bare server + client

Every child process is stopped when the run ends, fails or is interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MOCK = HERE / "mock_upstream.py"
# uvicorn on the sidecar's own settings (cli.serve_forever's "auto" resolves to these)
FLOOR_COMMAND = [
    sys.executable,
    "-m",
    "uvicorn",
    "floor_app:app",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
]
MODEL = "mock-large"
PROMPT = "what is 2+2"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

REGISTRY = """\
replace_defaults: true
backends:
  - {{name: mock, base_url: "http://127.0.0.1:{port}/v1"}}
models:
  - {{name: mock-small, backend: mock, tier: simple, input_per_mtok: 0.1, output_per_mtok: 0.4}}
  - {{name: mock-large, backend: mock, tier: complex, input_per_mtok: 2.5, output_per_mtok: 10}}
"""

# wrk script: args after "--" are cache-mode, stream (0/1), model, run nonce.
WRK_LUA = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local n, fixed, prefix, suffix, hdrs = 0, nil, nil, nil, nil
oh, cs, bad, nodone = {}, {}, 0, 0
local stream = false

function init(args)
  local cache, model, nonce = args[1], args[3], args[4]
  stream = args[2] == "1"
  hdrs = {["Content-Type"] = "application/json"}
  if cache == "bypass" then hdrs["x-optiroute-cache"] = "bypass" end
  prefix = '{"model":"' .. model .. '"' .. (stream and ',"stream":true' or '') ..
           ',"messages":[{"role":"user","content":"PROMPT'
  suffix = '"}]}'
  if cache == "hit" then
    fixed = wrk.format("POST", nil, hdrs, prefix .. suffix)
  else
    prefix = prefix .. " #" .. nonce .. "-" .. tid .. "-"
  end
end

function request()
  if fixed then return fixed end
  n = n + 1
  return wrk.format("POST", nil, hdrs, prefix .. n .. suffix)
end

function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
  local v = headers["x-optiroute-overhead-ms"]
  if v then oh[#oh + 1] = tonumber(v) end
  local c = headers["x-optiroute-cache"]
  if c then cs[c] = (cs[c] or 0) + 1 end
  if stream and not body:find("data: [DONE]", 1, true) then nodone = nodone + 1 end
end

local function pct(sorted, p)
  if #sorted == 0 then return -1 end
  local i = math.ceil(#sorted * p / 100)
  if i < 1 then i = 1 end
  return sorted[i]
end

function done(summary, latency, requests)
  local all, caches, nbad, nnodone = {}, {}, 0, 0
  for _, t in ipairs(threads) do
    for _, v in ipairs(t:get("oh")) do all[#all + 1] = v end
    for k, v in pairs(t:get("cs")) do caches[k] = (caches[k] or 0) + v end
    nbad = nbad + t:get("bad")
    nnodone = nnodone + t:get("nodone")
  end
  table.sort(all)
  local parts = {}
  for k, v in pairs(caches) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.6f,"errors":%d,"non200":%d,"incomplete":%d,' ..
    '"p50_ms":%.4f,"p90_ms":%.4f,"p99_ms":%.4f,"max_ms":%.4f,"mean_ms":%.4f,' ..
    '"ovh_n":%d,"ovh_p50_ms":%.4f,"ovh_p99_ms":%.4f,"cache":{%s}}\n',
    summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.timeout, nbad, nnodone,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    #all, pct(all, 50), pct(all, 99), table.concat(parts, ",")))
end
""".replace("PROMPT", PROMPT)

# The stack as shipped (ingress, exact cache miss, rule classify, select, breaker,
# forward, metrics, one JSON log line per request at the default level "info"), with
# two settings pinned: the semantic cache is on by default and would load an
# embedding model (a download, and not part of this measurement), and "auto" could
# pick another router when one is configured.
MEASURED_STACK = {"OPTIROUTE_SEMANTIC": "false", "OPTIROUTE_ROUTER": "rules"}

CHILDREN: list[subprocess.Popen[Any]] = []


# ---------------------------------------------------------------- small helpers


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loadavg() -> tuple[float, float, float, str]:
    fields = Path("/proc/loadavg").read_text().split()
    return float(fields[0]), float(fields[1]), float(fields[2]), fields[3]


def proc_cpu_s(pid: int) -> float:
    data = Path(f"/proc/{pid}/stat").read_text()
    rest = data[data.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_mem_mb(pid: int) -> tuple[float, float]:
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


def core_busy_s() -> dict[int, float]:
    """Busy seconds per core (everything but idle and iowait) since boot."""
    out: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            ticks = [int(v) for v in values]
            out[int(name[3:])] = (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK
    return out


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def start(cmd: list[str], cpu: int | None = None, **kwargs: Any) -> subprocess.Popen[Any]:
    """Start a child in its own session (a Ctrl-C reaches only this script, which then
    stops the children itself), optionally pinned to one core.  The stop signals are
    held back until the child is on the list that clean-up walks."""

    def in_child() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=in_child, **kwargs)
        CHILDREN.append(proc)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return proc


def _signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    """Signal the child's process group: start() makes every child the leader of its
    own, so anything it forked (a server's workers) goes too.  Only called while the
    child is not reaped, so its pid, and so the group's id, is still ours."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


def stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(5)
    if proc in CHILDREN:
        CHILDREN.remove(proc)


def stop_all() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # a second Ctrl-C waits for this
    try:
        for proc in list(reversed(CHILDREN)):
            with contextlib.suppress(Exception):
                stop(proc, grace=5.0)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def request(
    port: int,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        hdrs = {"content-type": "application/json", **(headers or {})}
        conn.request(method, path, body=payload, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def wait_ready(
    port: int, path: str, proc: subprocess.Popen[Any], what: str, deadline_s: float = 30.0
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if request(port, "GET", path, timeout=1.0)[0] == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} was not ready after {deadline_s:.0f}s")


def check_target(port: int, sidecar: bool) -> None:
    """One JSON and one streamed request, checked, before any load."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT + " (check)"}]}
    status, headers, data = request(port, "POST", "/v1/chat/completions", body)
    if status != 200 or "choices" not in json.loads(data):
        raise RuntimeError(f"JSON check failed: HTTP {status}: {data[:300]!r}")
    if sidecar and "x-optiroute-overhead-ms" not in headers:
        raise RuntimeError("the sidecar's answer has no x-optiroute-overhead-ms header")
    status, headers, data = request(port, "POST", "/v1/chat/completions", {**body, "stream": True})
    if status != 200 or not data.rstrip().endswith(b"data: [DONE]") or b'"content"' not in data:
        raise RuntimeError(f"stream check failed: HTTP {status}: {data[-300:]!r}")


# ---------------------------------------------------------------- load generators


async def _python_load(cfg: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    url, conc, seconds = cfg["url"], cfg["concurrency"], cfg["seconds"]
    stream, cache = cfg["stream"], cfg["cache"]
    headers = {"content-type": "application/json"}
    if cache == "bypass":
        headers["x-optiroute-cache"] = "bypass"
    latencies: list[float] = []
    overheads: list[float] = []
    caches: Counter[str] = Counter()
    errors = non200 = incomplete = 0

    def payload(tag: str) -> bytes:
        content = PROMPT if cache == "hit" else f"{PROMPT} #{cfg['nonce']}-{tag}"
        body: dict[str, Any] = {
            "model": cfg["model"],
            "messages": [{"role": "user", "content": content}],
        }
        if stream:
            body["stream"] = True
        return json.dumps(body, separators=(",", ":")).encode()

    connector = aiohttp.TCPConnector(limit=conc, limit_per_host=conc, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        started = time.perf_counter()
        end = started + seconds

        async def worker(w: int) -> None:
            nonlocal errors, non200, incomplete
            i = 0
            while time.perf_counter() < end:
                i += 1
                data = payload(f"{w}-{i}")
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=data, headers=headers) as resp:
                        body = await resp.read()
                        status = resp.status
                        value = resp.headers.get("x-optiroute-overhead-ms")
                        state = resp.headers.get("x-optiroute-cache")
                except Exception:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    non200 += 1
                if value is not None:
                    overheads.append(float(value))
                if state is not None:
                    caches[state] += 1
                if stream and b"data: [DONE]" not in body:
                    incomplete += 1

        await asyncio.gather(*(worker(w) for w in range(conc)))
        duration = time.perf_counter() - started

    latencies.sort()
    overheads.sort()
    ms = [x * 1000 for x in latencies]
    return {
        "requests": len(latencies),
        "duration_s": duration,
        "errors": errors,
        "non200": non200,
        "incomplete": incomplete,
        "p50_ms": pct(ms, 50),
        "p90_ms": pct(ms, 90),
        "p99_ms": pct(ms, 99),
        "max_ms": ms[-1] if ms else -1,
        "mean_ms": sum(ms) / len(ms) if ms else -1,
        "ovh_n": len(overheads),
        "ovh_p50_ms": pct(overheads, 50),
        "ovh_p99_ms": pct(overheads, 99),
        "cache": dict(caches),
    }


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return -1.0
    index = max(0, -(-len(sorted_values) * p // 100) - 1)  # nearest rank
    return sorted_values[int(index)]


def python_loadgen_main(spec: str) -> int:
    cfg = json.loads(spec)
    if cfg.get("cpu") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cfg["cpu"]})
    try:
        import uvloop

        result = uvloop.run(_python_load(cfg))
    except ImportError:
        result = asyncio.run(_python_load(cfg))
    print("WRKJSON " + json.dumps(result), flush=True)
    return 0


class LoadGen:
    def __init__(self, tool: str, cpu: int | None, workdir: Path) -> None:
        self.tool = tool
        self.cpu = cpu
        self.script = workdir / "bench.lua"
        if tool == "wrk":
            self.script.write_text(WRK_LUA)
        self.runs = 0

    def run(
        self, port: int, concurrency: int, seconds: float, stream: bool, cache: str
    ) -> dict[str, Any]:
        """One closed-loop run of ``concurrency`` connections for ``seconds``."""
        self.runs += 1
        nonce = f"{os.getpid()}x{self.runs}x{time.time_ns() % 10**9}"
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        if self.tool == "wrk":
            cmd = [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                str(self.script),
                url,
                "--",
                cache,
                "1" if stream else "0",
                MODEL,
                nonce,
            ]
        else:
            spec = json.dumps(
                {
                    "url": url,
                    "concurrency": concurrency,
                    "seconds": seconds,
                    "stream": stream,
                    "cache": cache,
                    "model": MODEL,
                    "nonce": nonce,
                    "cpu": self.cpu,
                }
            )
            cmd = [sys.executable, str(Path(__file__).resolve()), "--loadgen", spec]
        proc = start(cmd, cpu=self.cpu, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=seconds + 60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc in CHILDREN:
                CHILDREN.remove(proc)
        # the child is reaped: its CPU time is in children_cpu_s() now
        line = next((x for x in out.decode().splitlines() if x.startswith("WRKJSON ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(
                f"load generator failed (code {proc.returncode}): "
                f"{err.decode()[-2000:]}{out.decode()[-2000:]}"
            )
        result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
        return result


def children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- the run


def measure(
    gen: LoadGen,
    port: int,
    concurrency: int,
    seconds: float,
    stream: bool,
    cache: str,
    sut_pid: int,
    mock_pid: int,
) -> dict[str, Any]:
    cores0 = core_busy_s()
    sut0, mock0, gen0 = proc_cpu_s(sut_pid), proc_cpu_s(mock_pid), children_cpu_s()
    t0 = time.perf_counter()
    result = gen.run(port, concurrency, seconds, stream, cache)
    wall = time.perf_counter() - t0
    sut1, mock1, gen1 = proc_cpu_s(sut_pid), proc_cpu_s(mock_pid), children_cpu_s()
    cores1 = core_busy_s()
    rss, hwm = proc_mem_mb(sut_pid)
    requests = result["requests"]
    sut_cpu = sut1 - sut0
    result.update(
        {
            "rps": requests / result["duration_s"] if result["duration_s"] > 0 else 0.0,
            "wall_s": wall,
            "cpu_us_per_req": sut_cpu / requests * 1e6 if requests else None,
            "sut_cpu_pct": 100 * sut_cpu / wall,
            "mock_cpu_pct": 100 * (mock1 - mock0) / wall,
            "gen_cpu_pct": 100 * (gen1 - gen0) / wall,
            "core_busy_pct": {
                str(c): round(100 * (cores1[c] - cores0.get(c, 0.0)) / wall, 1)
                for c in sorted(cores1)
            },
            "rss_mb": round(rss, 1),
            "rss_peak_mb": round(hwm, 1),
            "loadavg_1m": loadavg()[0],
        }
    )
    return result


def sidecar_env(
    config: Path, port: int, engine: str, data_dir: Path | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIROUTE_")}
    if data_dir is not None:
        # a fresh ledger and key store per run, not the caller's ~/.local/share one
        env["OPTIROUTE_DATA_DIR"] = str(data_dir)
    env.update(
        {
            "OPTIROUTE_CONFIG": str(config),
            "OPTIROUTE_LOCAL_MODEL": "off",
            "OPTIROUTE_PORT": str(port),
            "OPTIROUTE_HOST": "127.0.0.1",
            "OPTIROUTE_HTTP_ENGINE": engine,
            "PYTHONUNBUFFERED": "1",
            **MEASURED_STACK,
        }
    )
    return env


def stack_line() -> str:
    """The sidecar configuration this run measures, for the header and the footer."""
    pinned = ", ".join(f"{k}={v}" for k, v in MEASURED_STACK.items())
    return (
        "sidecar stack as shipped: ingress, exact cache (miss + store), rule classify, "
        "select, breaker, forward, metrics, JSON log line per request (level info, "
        f"to a file); {pinned}, OPTIROUTE_LOCAL_MODEL=off"
    )


def launch(
    cmd: list[str],
    cpu: int | None,
    log_path: Path,
    env: dict[str, str],
    cwd: Path | None = None,
) -> subprocess.Popen[Any]:
    """Start a server under test pinned to ``cpu`` (``taskset -c`` when installed, as
    a user would, else sched_setaffinity in the child), its stdout and stderr going to
    ``log_path``: a file never fills up and blocks the server as an unread pipe would."""
    taskset = shutil.which("taskset")
    if taskset and cpu is not None:
        cmd = [taskset, "-c", str(cpu), *cmd]
        cpu = None
    with open(log_path, "wb") as log_file:  # the child keeps its own descriptor
        return start(cmd, cpu=cpu, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def log_tail(log_path: Path, chars: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return log_path.read_text(errors="replace")[-chars:]
    return "(no log)"


@contextlib.contextmanager
def target_process(name: str, proc: subprocess.Popen[Any], log_path: Path) -> Iterator[None]:
    """Measure ``proc``; its log's tail is shown when that fails, and it is stopped."""
    try:
        yield
    except Exception:
        log(f"{name} log ({log_path}):\n" + log_tail(log_path))
        raise
    finally:
        stop(proc)
    log(f"{name} log: {log_size(log_path)}")


def log_size(log_path: Path) -> str:
    with contextlib.suppress(OSError):
        data = log_path.read_bytes()
        lines = data.count(b"\n")
        return f"{lines} lines, {len(data) / 1e6:.1f} MB"
    return "no log"


def prepare_litellm() -> str:
    """The pinned LiteLLM proxy in its own venv, installed on first use; its version."""
    if str(HERE) not in sys.path:  # the sibling module, also when this file is imported
        sys.path.insert(0, str(HERE))
    import litellm_target

    try:
        return litellm_target.ensure_installed(log)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        raise RuntimeError(f"could not set up LiteLLM in {litellm_target.VENV}: {exc}") from exc


def start_litellm(
    workdir: Path, mock_port: int, cpu: int | None
) -> tuple[subprocess.Popen[Any], int, Path]:
    """Start the LiteLLM proxy in front of the mock; wait until it answers."""
    import litellm_target

    port = free_port()
    config = litellm_target.write_config(workdir, mock_port)
    log_path = workdir / "litellm.log"
    home = workdir / "litellm-home"
    home.mkdir(exist_ok=True)
    proc = launch(
        litellm_target.command(config, port), cpu, log_path, litellm_target.env(home), cwd=home
    )
    try:
        wait_ready(
            port,
            litellm_target.READY_PATH,
            proc,
            "the LiteLLM proxy",
            deadline_s=litellm_target.READY_TIMEOUT_S,
        )
    except RuntimeError as exc:
        stop(proc)
        raise RuntimeError(f"{exc}; the end of its log:\n{log_tail(log_path)}") from exc
    return proc, port, log_path


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    cpus = sorted(os.sched_getaffinity(0))
    sut_cpu = cpus[0]
    gen_cpu = cpus[1] if len(cpus) > 1 else cpus[0]
    pin = sut_cpu if len(cpus) > 1 else None
    if len(cpus) < 2:
        log("warning: one core only: sidecar, mock and load generator share it")
    tool = args.client
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    if tool == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk), or use --client python")
    engines = ["aiohttp", "httpx"] if args.engine == "both" else [args.engine]
    concs = args.concurrency or ([1, 16, 64] if args.full else [1, 16])
    modes = args.modes
    caches = args.cache
    litellm = "litellm" in args.vs
    floor = "floor" in args.vs
    # installed before anything is measured: the install's CPU is not in any point
    litellm_version = prepare_litellm() if litellm else None
    targets = 1 + len(engines) * len(caches) + int(litellm) + int(floor)
    points_total = len(modes) * len(concs) * targets
    log(
        f"{points_total} points x {args.seconds:g}s with {tool}; proxies on core {sut_cpu}, "
        f"mock and load generator on core {gen_cpu}; loadavg {loadavg()[:3]}"
    )
    log(stack_line())
    if litellm_version:
        log(f"vs LiteLLM proxy {litellm_version} (1 worker, no database, no master key)")

    results: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="optiroute-bench-"))
    try:
        gen = LoadGen(tool, gen_cpu if len(cpus) > 1 else None, workdir)
        mock_port = free_port()
        mock = start(
            [sys.executable, str(MOCK), "--port", str(mock_port), "--cpu", str(gen_cpu)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_ready(mock_port, "/healthz", mock, "the mock upstream")
        check_target(mock_port, sidecar=False)
        config = workdir / "registry.yaml"
        config.write_text(REGISTRY.format(port=mock_port))

        def points(
            target: str, engine: str | None, port: int, pid: int, cache_modes: list[str]
        ) -> None:
            for mode in modes:
                stream = mode == "stream"
                if args.warmup > 0:
                    gen.run(port, max(concs), args.warmup, stream, cache_modes[0])
                for cache in cache_modes:
                    for conc in concs:
                        res = measure(gen, port, conc, args.seconds, stream, cache, pid, mock.pid)
                        res.update(
                            {
                                "target": target,
                                "engine": engine,
                                "mode": mode,
                                "concurrency": conc,
                                "cache_mode": cache,
                                "client": tool,
                                "seconds": args.seconds,
                            }
                        )
                        if target == "litellm":
                            res["litellm_version"] = litellm_version
                        results.append(res)
                        log(
                            f"[{len(results)}/{points_total}] {target:<16} {mode:<6} "
                            f"{cache:<6} c={conc:<3} {res['rps']:8.0f} req/s  "
                            f"p50 {res['p50_ms']:.3f} ms  p99 {res['p99_ms']:.3f} ms  "
                            f"load {res['loadavg_1m']:.2f}"
                        )

        points("direct", None, mock_port, mock.pid, ["unique"])

        if floor:
            port = free_port()
            log_path = workdir / "floor.log"
            passthrough = launch(
                [*FLOOR_COMMAND, "--port", str(port)],
                pin,
                log_path,
                {**os.environ, "FLOOR_UPSTREAM": f"http://127.0.0.1:{mock_port}"},
                cwd=HERE,
            )
            with target_process("floor", passthrough, log_path):
                wait_ready(port, "/healthz", passthrough, "the floor pass-through")
                check_target(port, sidecar=False)
                points("floor", None, port, passthrough.pid, ["unique"])

        for engine in engines:
            port = free_port()
            log_path = workdir / f"sidecar-{engine}.log"
            data_dir = workdir / f"data-{engine}"
            sidecar = launch(
                [sys.executable, "-m", "optiroute_mw.cli", "serve"],
                pin,
                log_path,
                sidecar_env(config, port, engine, data_dir),
                cwd=ROOT,
            )
            with target_process(f"sidecar-{engine}", sidecar, log_path):
                wait_ready(port, "/healthz", sidecar, f"the sidecar ({engine})")
                check_target(port, sidecar=True)
                points(f"sidecar-{engine}", engine, port, sidecar.pid, caches)

        if litellm:
            proxy, port, log_path = start_litellm(workdir, mock_port, pin)
            with target_process("litellm", proxy, log_path):
                check_target(port, sidecar=False)
                # LiteLLM has no cache here and every prompt is unique anyway
                points("litellm", None, port, proxy.pid, ["unique"])
        stop(mock)
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    add_relative(results)
    return results


def add_relative(results: list[dict[str, Any]]) -> None:
    direct = {(r["mode"], r["concurrency"]): r for r in results if r["target"] == "direct"}
    for r in results:
        base = direct.get((r["mode"], r["concurrency"]))
        if r["target"] == "direct" or base is None:
            continue
        r["added_p50_ms"] = r["p50_ms"] - base["p50_ms"]
        r["added_p99_ms"] = r["p99_ms"] - base["p99_ms"]
        r["rps_ratio"] = r["rps"] / base["rps"] if base["rps"] else None


# ---------------------------------------------------------------- output

COLUMNS = [
    ("mode", 6),
    ("conc", 4),
    ("target", 16),
    ("cache", 6),
    ("req/s", 7),
    ("p50ms", 7),
    ("p90ms", 7),
    ("p99ms", 7),
    ("+p50ms", 7),
    ("+p99ms", 7),
    ("rps_x", 5),
    ("hdr_ms", 6),
    ("cpu_us/req", 10),
    ("sut%", 4),
    ("mock%", 5),
    ("gen%", 4),
    ("oth0%", 5),
    ("oth1%", 5),
    ("rss_MB", 6),
    ("err", 3),
    ("load", 5),
]


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[dict[str, Any]]) -> str:
    lines = ["  ".join(f"{name:>{width}}" for name, width in COLUMNS)]
    lines.append("  ".join("-" * width for _, width in COLUMNS))
    order = {"direct": 0, "floor": 1, "litellm": 3}  # sidecars in between
    keyed = sorted(
        results,
        key=lambda r: (
            r["mode"] != "json",
            r["concurrency"],
            order.get(r["target"], 2),
            r["target"],
            r["cache_mode"] != "unique",
            r["cache_mode"],
        ),
    )
    previous = None
    for r in keyed:
        group = (r["mode"], r["concurrency"])
        if previous is not None and group != previous:
            lines.append("")
        previous = group
        proxy = r["target"] != "direct"  # a sidecar or LiteLLM
        sidecar = r["target"].startswith("sidecar")  # only it has cache modes and headers
        cores = r["core_busy_pct"]
        other0 = cores["0"] - r["sut_cpu_pct"] if "0" in cores else None
        other1 = (cores["1"] - r["mock_cpu_pct"] - r["gen_cpu_pct"]) if "1" in cores else None
        errors = r["errors"] + r["non200"] + r["incomplete"]
        cells = [
            r["mode"],
            str(r["concurrency"]),
            r["target"],
            r["cache_mode"] if sidecar else "-",
            fmt(r["rps"], ".0f"),
            fmt(r["p50_ms"], ".3f"),
            fmt(r["p90_ms"], ".3f"),
            fmt(r["p99_ms"], ".3f"),
            fmt(r.get("added_p50_ms"), "+.3f"),
            fmt(r.get("added_p99_ms"), "+.3f"),
            fmt(r.get("rps_ratio"), ".2f"),
            fmt(r["ovh_p50_ms"] if sidecar and r["ovh_n"] else None, ".3f"),
            fmt(r["cpu_us_per_req"], ".0f"),
            fmt(r["sut_cpu_pct"] if proxy else None, ".0f"),
            fmt(r["mock_cpu_pct"], ".0f"),
            fmt(r["gen_cpu_pct"], ".0f"),
            fmt(other0, ".0f"),
            fmt(other1, ".0f"),
            fmt(r["rss_mb"], ".1f"),
            str(errors),
            fmt(r["loadavg_1m"], ".2f"),
        ]
        widths = [width for _, width in COLUMNS]
        lines.append("  ".join(f"{cell:>{w}}" for cell, w in zip(cells, widths, strict=True)))
    return "\n".join(lines)


def machine_line(
    before: tuple[float, ...], after: tuple[float, ...], results: list[dict[str, Any]]
) -> str:
    loads = [r["loadavg_1m"] for r in results]
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return (
        f"machine: {os.cpu_count()} cpus ({cpu_model}), Python {platform.python_version()}; "
        f"loadavg 1/5/15m before {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f}, "
        f"during {min(loads):.2f}..{max(loads):.2f} (1m), "
        f"after {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f}"
    )


# ---------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="duration of each point (default 10)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of unmeasured load before each target and mode (0: none)",
    )
    parser.add_argument("--full", action="store_true", help="also concurrency 64")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        help="comma list, overrides the default 1,16 (1,16,64 with --full)",
    )
    parser.add_argument("--engine", choices=["aiohttp", "httpx", "both"], default="both")
    parser.add_argument(
        "--modes",
        type=lambda s: s.split(","),
        default=["json", "stream"],
        help="comma list of json,stream",
    )
    parser.add_argument(
        "--cache",
        type=lambda s: s.split(","),
        default=["unique", "bypass"],
        help="comma list: unique (every prompt new: a cache miss, then a store), "
        "bypass (unique prompts with x-optiroute-cache: bypass), "
        "hit (one repeated prompt: cache hits)",
    )
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk if installed (auto), or the aiohttp one",
    )
    parser.add_argument(
        "--vs",
        choices=["litellm", "floor"],
        action="append",
        default=[],
        help="also measure this proxy in front of the same mock, same points; repeatable "
        "(litellm: LiteLLM proxy, installed once into bench/.venvs/litellm; floor: "
        "uvicorn and aiohttp with nothing between them, bench/floor_app.py)",
    )
    parser.add_argument("--json", action="store_true", help="also one JSON object per point")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for mode in args.modes:
        if mode not in ("json", "stream"):
            parser.error(f"--modes: unknown mode {mode!r}")
    for cache in args.cache:
        if cache not in ("unique", "bypass", "hit"):
            parser.error(f"--cache: unknown mode {cache!r}")
    if args.seconds < 1 and args.client != "python":
        parser.error("--seconds must be at least 1 (wrk counts whole seconds)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loadgen:
        return python_loadgen_main(args.loadgen)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    before = loadavg()[:3]
    started = time.monotonic()
    try:
        results = run(args)
    except KeyboardInterrupt:
        log("interrupted; children stopped")
        return 130
    except RuntimeError as exc:  # a target that did not start or answer: say why, no trace
        log(f"error: {exc}")
        return 1
    after = loadavg()[:3]
    print(table(results))
    print()
    print(machine_line(before, after, results))
    print(stack_line())
    versions = {r["litellm_version"] for r in results if r.get("litellm_version")}
    if versions:
        print(f"litellm: LiteLLM proxy {', '.join(sorted(versions))}, 1 worker, same core")
    print(
        f"client: {results[0]['client'] if results else '-'}; {args.seconds:g}s per point; "
        f"run took {time.monotonic() - started:.0f}s"
    )
    if args.json:
        for r in results:
            print(json.dumps(r, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
