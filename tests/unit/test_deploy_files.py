"""The deployment files (Dockerfile, deploy/) are valid and agree with the code.

Validators run when installed and skip, naming what is missing, when not: yamllint,
kubernetes-validate, check-jsonschema (its vendored compose-spec schema) and hadolint come
with the test extras (pyproject.toml), all offline; haproxy and systemd-analyze are
Debian's. No container runtime is needed or used (docs/deployment.md, Validation).

The consistency checks need only PyYAML: every ``RTGATE_*`` variable the files name is
one rtgate reads, the probe paths are routes of the app, the metric the autoscaler reads
is one /metrics exports, and every stop grace period outlasts the drain.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtgate.server.ephemeral import SECRET_ENV
from rtgate.server.settings import FLAT_NAMES, Settings
from rtgate.server.workers import EXIT_GRACE_S

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
HAPROXY_CFG = DEPLOY / "haproxy.cfg"
SYSTEMD_UNIT = DEPLOY / "systemd" / "rtgate.service"
DOC = ROOT / "docs" / "deployment.md"
K8S_NOT_RESOURCES = {"kustomization.yaml"}
"""Files under deploy/k8s that are not Kubernetes objects."""

RTGATE_VAR = re.compile(r"\bRTGATE_[A-Z0-9_]*[A-Z0-9]\b")


# ----------------------------------------------------------------------------- helpers

def tool(name: str, install: str = "pip install -e '.[test]'") -> str:
    """The path of a validator: the test environment's own first, then PATH; else skip,
    saying how to install it."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({install})")
    return found


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name not in K8S_NOT_RESOURCES)


def k8s_objects() -> Iterator[dict[str, Any]]:
    for path in k8s_files():
        yield from load_all(path)


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    for obj in k8s_objects():
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"deploy/k8s has no {kind} {name}")


def rtgate_container() -> dict[str, Any]:
    (container,) = k8s_object("Deployment", "rtgate")["spec"]["template"]["spec"]["containers"]
    return container


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_nodes() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items() if svc.get("image", "").startswith("rtgate")}


def seconds(duration: str | int) -> float:
    """A compose duration (``50s``, ``1m30s``, ``500ms``) in seconds."""
    if isinstance(duration, int):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def known_variables() -> set[str]:
    """Every ``RTGATE_*`` variable rtgate reads: ``RTGATE_`` + a setting's flat name, and the
    ephemeral-key secret (read by server/ephemeral.py, not a setting)."""
    return {f"RTGATE_{name.upper()}" for name in FLAT_NAMES} | {SECRET_ENV}


def stop_budget_s(env: dict[str, str]) -> float:
    """How long a stopped node may take: drain, close handshakes, and the grace the
    supervisor gives its workers beyond both (server/workers.py)."""
    defaults = Settings()
    drain = float(env.get("RTGATE_DRAIN_TIMEOUT_S", defaults.shutdown.drain_timeout_s))
    shutdown = float(env.get("RTGATE_SHUTDOWN_TIMEOUT_S", defaults.shutdown.shutdown_timeout_s))
    return drain + shutdown + EXIT_GRACE_S


def deploy_text_files() -> list[Path]:
    files = [DOCKERFILE, ROOT / ".dockerignore", DOC]
    files += [p for p in DEPLOY.rglob("*") if p.is_file()]
    return [p for p in files if p.exists()]


def app_paths() -> set[str]:
    from rtgate.server.app import create_app

    return {getattr(route, "path", "") for route in create_app(Settings()).routes}


# ----------------------------------------------------------------------------- validators

def test_yaml_files_pass_yamllint() -> None:
    """Every YAML file under deploy/ is yamllint-clean, warnings included."""
    result = run(tool("yamllint"), "--strict", "-c", str(DEPLOY / ".yamllint.yaml"), str(DEPLOY))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", ["1.27.0", None], ids=["k8s-1.27", "k8s-latest"])
def test_kubernetes_manifests_match_the_api_schemas(version: str | None) -> None:
    """The manifests validate strictly (no unknown fields) against the oldest Kubernetes
    the docs name and the newest schema kubernetes-validate ships."""
    argv = [tool("kubernetes-validate"), "--strict", "--quiet"]
    if version:
        argv += ["-k", version]
    result = run(*argv, *map(str, k8s_files()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_spec() -> None:
    """compose.yaml validates against the Compose Specification schema (vendored, offline)."""
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_haproxy_config_is_valid() -> None:
    """haproxy -c accepts haproxy.cfg; its only warnings are the compose node names, which
    do not resolve outside the compose network (init-addr lets HAProxy start anyway)."""
    result = run(tool("haproxy", "apt-get install haproxy"), "-c", "-f", str(HAPROXY_CFG))
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if "[WARNING]" in line]
    unexpected = [w for w in warnings if not re.search(r"could not resolve address 'rtgate\d'", w)]
    assert not unexpected, unexpected


def test_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing in the Dockerfile (its one ignore is commented in place)."""
    result = run(tool("hadolint"), str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify reports nothing for the unit (its ExecStart pointed at an
    existing binary: rtgate is not installed under /opt here)."""
    unit = tmp_path / "rtgate.service"
    unit.write_text(SYSTEMD_UNIT.read_text().replace("/opt/rtgate/.venv/bin/rtgate", "/bin/true"))
    result = run(tool("systemd-analyze", "apt-get install systemd"), "verify", str(unit))
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr)


# ----------------------------------------------------------------------------- consistency

def test_every_rtgate_variable_is_one_rtgate_reads() -> None:
    """A misspelt RTGATE_* variable would be ignored silently: each one named in the
    deployment files or their documentation is a setting's flat name or the ephemeral secret."""
    known = known_variables()
    unknown = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in deploy_text_files()
        for name in RTGATE_VAR.findall(path.read_text())
        if name not in known
    }
    assert not unknown, sorted(unknown)


def test_probe_paths_are_routes_of_the_app() -> None:
    """Every health check asks a route the app serves: liveness and start-up /healthz,
    readiness (Kubernetes and HAProxy) /readyz."""
    container = rtgate_container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert re.search(r"http-check send meth GET uri /readyz\b", HAPROXY_CFG.read_text())
    assert "/healthz'" in re.search(r"HEALTHCHECK.*\n.*CMD.*", DOCKERFILE.read_text()).group(0)
    missing = {"/healthz", "/readyz"} - app_paths()
    assert not missing, f"routes missing from server/app.py: {missing}"


def test_probes_use_the_named_http_port() -> None:
    """The probes and the Service reach the port the server binds (RTGATE_PORT)."""
    container = rtgate_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = container_env(container)
    assert ports["http"] == int(env["RTGATE_PORT"]["value"]) == 8000
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    service = k8s_object("Service", "rtgate")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_kubernetes_grace_period_outlasts_the_drain() -> None:
    """The kubelet's SIGKILL comes after preStop + drain + close handshakes + the
    supervisor's grace, so a rolling restart never cuts a drain short."""
    pod = k8s_object("Deployment", "rtgate")["spec"]["template"]["spec"]
    container = rtgate_container()
    env = {k: v["value"] for k, v in container_env(container).items() if "value" in v}
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + stop_budget_s(env)


def test_compose_stop_grace_outlasts_the_drain() -> None:
    """docker compose stop waits longer than each node's drain before it kills it."""
    nodes = compose_nodes()
    assert len(nodes) == 3
    for name, node in nodes.items():
        env = {k: str(v) for k, v in node["environment"].items()}
        assert seconds(node["stop_grace_period"]) > stop_budget_s(env), name


def test_systemd_stop_timeout_outlasts_the_drain() -> None:
    """systemd's TimeoutStopSec outlasts the drain, and SIGTERM reaches the supervisor only."""
    unit = SYSTEMD_UNIT.read_text()
    env = dict(re.findall(r"(RTGATE_[A-Z_]+)=(\S+)", unit))
    assert float(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M).group(1)) > stop_budget_s(env)
    assert re.search(r"^KillMode=mixed$", unit, re.M)


def test_image_stop_settings() -> None:
    """The image stops with SIGTERM through tini, runs as the uid the pods require, binds
    every address and sets no key: it refuses to start without RTGATE_API_KEYS."""
    text = DOCKERFILE.read_text()
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["/usr/bin/tini", "--", "rtgate"\]$', text, re.M)
    assert "RTGATE_HOST=0.0.0.0" in text
    assert "RTGATE_API_KEYS" not in re.sub(r"#.*", "", text)
    assert "RTGATE_ALLOW_UNAUTHENTICATED" not in text
    user = re.search(r"^USER (\d+):(\d+)$", text, re.M)
    security = k8s_object("Deployment", "rtgate")["spec"]["template"]["spec"]["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (int(user.group(1)), int(user.group(2)))


def test_autoscaler_reads_an_exported_metric() -> None:
    """The HPA's Pods metric is a gauge /metrics exports (server/), the adapter rule serves
    it under the same name, and Prometheus scrapes every worker's internal port for it."""
    hpa = k8s_object("HorizontalPodAutoscaler", "rtgate")
    (metric,) = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    exported = re.compile(rf"# TYPE {metric} gauge|gauge\(\s*\"{metric}\"")
    sources = (ROOT / "src" / "rtgate" / "server").glob("*.py")
    assert any(exported.search(path.read_text()) for path in sources), f"no gauge {metric} in server/"
    adapter = yaml.safe_load((DEPLOY / "prometheus" / "adapter-values.yaml").read_text())
    assert [r["name"]["as"] for r in adapter["rules"]["custom"]] == [metric]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "scrape-config.yaml").read_text())
    keep = scrape["scrape_configs"][0]["relabel_configs"][0]["regex"]
    port_names = [p["name"] for p in rtgate_container()["ports"]]
    assert [n for n in port_names if re.fullmatch(keep, f"rtgate;server;{n}")] == [
        n for n in port_names if n.startswith("internal-")]


def test_every_node_advertises_an_address_the_others_reach() -> None:
    """Pods advertise their pod IP (downward API), compose nodes their service name; the
    declared internal ports start at RTGATE_INTERNAL_PORT, one per worker."""
    container = rtgate_container()
    env = container_env(container)
    assert env["RTGATE_ADVERTISE_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    first = int(env["RTGATE_INTERNAL_PORT"]["value"])
    internal = sorted(p["containerPort"] for p in container["ports"] if p["name"].startswith("internal-"))
    workers = int(float(container["resources"]["limits"]["cpu"]))
    assert internal == list(range(first, first + workers))
    for name, node in compose_nodes().items():
        assert node["environment"]["RTGATE_ADVERTISE_HOST"] == node["hostname"] == name


def test_nodes_share_keys_and_redis() -> None:
    """Every compose node reads the same env file and Redis; the pods read the Secret that
    secret.example.yaml shows, whose values are placeholders only."""
    nodes = compose_nodes()
    assert {node["env_file"] for node in nodes.values()} == {"rtgate.env"}
    assert len({node["environment"]["RTGATE_REDIS_URL"] for node in nodes.values()}) == 1
    example = (DEPLOY / "rtgate.env.example").read_text()
    values = dict(re.findall(r"^(RTGATE_[A-Z_]+)=(.*)$", example, re.M))
    assert set(values) == {"RTGATE_API_KEYS", SECRET_ENV}
    assert all("change-me" in v for v in values.values())
    assert "rtgate.env" in (DEPLOY / ".gitignore").read_text().split()
    secret = k8s_object("Secret", "rtgate-secrets")
    assert set(secret["stringData"]) == {"RTGATE_API_KEYS", SECRET_ENV}
    assert all("change-me" in v for v in secret["stringData"].values())
    refs = [e["secretRef"]["name"] for e in rtgate_container()["envFrom"]]
    assert refs == ["rtgate-secrets"]


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    """kubectl apply -k applies every object file; the Secret is made out of band."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in k8s_files()} - {"secret.example.yaml"}


def test_tunnel_timeout_outlasts_the_keepalive() -> None:
    """HAProxy's idle timeout for WebSockets is longer than rtgate's ping interval, so a
    live but quiet session is never cut by the proxy."""
    tunnel = re.search(r"^\s*timeout tunnel (\d+)s$", HAPROXY_CFG.read_text(), re.M)
    assert tunnel and float(tunnel.group(1)) > 3 * Settings().websocket.ping_interval_s
    assert "shutdown-sessions" not in re.sub(r"#.*", "", HAPROXY_CFG.read_text())


def test_docker_build_context_is_the_package_only() -> None:
    """.dockerignore admits what the build copies (pyproject.toml, README.md, src/) and
    nothing else, so no env file with real keys enters an image."""
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    admitted = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M))
    assert {name for group in copied for name in group.split()} == admitted == {"pyproject.toml", "README.md", "src"}
