"""Static checks of deploy/: no container engine, no cluster, no network.

Each validator runs on the real files and, once, on a broken input to show that it can fail:
hadolint (Dockerfile), the compose-spec JSON schema (docker-compose.yaml), kubernetes-validate
(deploy/kubernetes/ and the sidecar of the Helm values), yamllint (every YAML file). The rest are
consistency checks between the containers that must agree: socket path, DAG paths, probes,
security context and stop timeouts above [zygote] drain_timeout.
"""

from __future__ import annotations

import configparser
import copy
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yaml"
K8S_DIR = DEPLOY / "kubernetes"
K8S_CONFIGMAP = K8S_DIR / "airflow-config.yaml"
K8S_NATIVE = K8S_DIR / "dag-processor-native-sidecar.yaml"
K8S_PLAIN = K8S_DIR / "dag-processor-sidecar-container.yaml"
HELM_VALUES = DEPLOY / "helm" / "values-zygote.yaml"
README = DEPLOY / "README.md"
YAMLLINT_CONFIG = DEPLOY / ".yamllint"
HADOLINT_CONFIG = DEPLOY / ".hadolint.yaml"

BIN = Path(sys.executable).parent
# Native sidecars (initContainers with restartPolicy: Always) exist from 1.29 and are GA in 1.33.
K8S_VERSION = "1.33.0"
BASE_IMAGE = "apache/airflow"
PYTHON_TAG = "3.11"
STATUS_COMMAND = ["python", "-m", "zygote.client.health"]
DRAIN_ENV = "AIRFLOW__ZYGOTE__DRAIN_TIMEOUT"
SOCKET_ENV = "AIRFLOW__ZYGOTE__SOCKET"
# Sections the handshake fingerprints; secrets among them stay out of the zygote.
PARSE_SECTIONS = ("CORE", "DAG_PROCESSOR", "SECRETS", "OPERATORS")
SECRET_ENV = ("AIRFLOW__DATABASE__", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET")
# Volumes the official chart defines in the dag-processor pod itself.
CHART_POD_VOLUMES = {"config", "dags", "logs"}
CHART_AIRFLOW_HOME = "/opt/airflow"


# ----------------------------------------------------------------------------- helpers


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}: install the project's dev extra")
    return path


def _run(args: list[str | Path], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False
    )


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def default_drain_timeout() -> float:
    from zygote.config import OPTIONS

    (option,) = (o for o in OPTIONS if o.name == "drain_timeout")
    return float(option.default)


def drain_timeout(env: dict[str, str]) -> float:
    return float(env.get(DRAIN_ENV, default_drain_timeout()))


def socket_dir(endpoint: str) -> str:
    assert endpoint.startswith("ipc:///"), f"containers share an ipc:// socket, not {endpoint!r}"
    return str(Path(endpoint.removeprefix("ipc://")).parent)


def mount_holding(path: str, mount_paths: Any) -> str:
    """The mount path (of those given) under which ``path`` lies; the deepest one wins."""
    holders = [m for m in mount_paths if path == m or path.startswith(m.rstrip("/") + "/")]
    assert holders, f"{path} is on no mounted volume"
    return max(holders, key=len)


def assert_socket_below_mount(directory: str, mount_path: str) -> None:
    # The zygote creates the socket's directory and chmods it owner-only; a mount point (an
    # emptyDir's is root-owned) cannot be that directory.
    assert directory != mount_path and directory.startswith(mount_path.rstrip("/") + "/"), (
        f"socket directory {directory} must be a subdirectory of the shared mount {mount_path}"
    )


def parse_duration(value: str | int | float) -> float:
    """Seconds in a compose duration such as ``90s``, ``1m30s`` or ``1h``."""
    if isinstance(value, int | float):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def is_status_probe(command: list[str] | str) -> bool:
    """Whether a probe or healthcheck command runs the lean status query (exec or shell form)."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if words[:1] in (["CMD"], ["CMD-SHELL"]):
        words = words[1:] if words[0] == "CMD" else shlex.split(" ".join(words[1:]))
    return any(words[i : i + 3] == STATUS_COMMAND for i in range(len(words)))


# ----------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "dangling line continuation"
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    assert starts, "no FROM"
    return instructions[starts[-1] :]


def base_image(instructions: list[tuple[str, str]], stage_from: str) -> str:
    """A stage's base image, with ``${ARG}`` resolved to the default of a global ARG (before any FROM)."""
    defaults: dict[str, str] = {}
    for keyword, rest in instructions:
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name.strip()] = value.strip()
    image = stage_from.split(maxsplit=1)[0]
    return re.sub(r"\$\{(\w+)\}", lambda match: defaults[match.group(1)], image)


def test_hadolint_passes() -> None:
    result = _run([_tool("hadolint"), "--no-color", "-c", HADOLINT_CONFIG, DOCKERFILE])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM apache/airflow:latest\nRUN pip install pandas\nUSER 0\n")
    result = _run([_tool("hadolint"), "--no-color", "-c", HADOLINT_CONFIG, bad])
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042", "DL3002"):
        assert rule in result.stdout, result.stdout


def test_dockerfile_contract() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    stage = final_stage(instructions)
    by_kw: dict[str, list[str]] = {}
    for kw, rest in stage:
        by_kw.setdefault(kw, []).append(rest)

    # Same apache-airflow as the project pins, and the Python the dag-processor runs: by default
    # the official image (a stand-in base is only ever a build argument).
    image = base_image(instructions, stage[0][1])
    airflow_version = metadata.version("apache-airflow")
    assert image == f"{BASE_IMAGE}:{airflow_version}-python{PYTHON_TAG}"
    constraints = (REPO / "constraints.txt").read_text()
    assert f"apache-airflow=={airflow_version}" in constraints.splitlines()

    # Runs as the image's non-root user, numerically (so runAsNonRoot can verify it).
    user = by_kw["USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user

    # Exec form (JSON arrays) for ENTRYPOINT and CMD; the zygote is the default command.
    entrypoint = json.loads(by_kw["ENTRYPOINT"][-1])
    assert entrypoint[:2] == ["/usr/bin/dumb-init", "--"], entrypoint
    assert json.loads(by_kw["CMD"][-1]) == ["airflow", "zygote", "serve"]
    assert by_kw["STOPSIGNAL"] == ["SIGTERM"]

    (healthcheck,) = by_kw["HEALTHCHECK"]
    options, _, command = healthcheck.partition("CMD ")
    assert command, healthcheck
    assert is_status_probe(json.loads(command)), healthcheck
    timeout = re.search(r"--timeout=(\S+)", options)
    assert timeout and parse_duration(timeout.group(1)) >= 5

    # The socket directory the image advertises exists in the image, owned by the airflow user.
    env = " ".join(by_kw["ENV"])
    endpoint = re.search(rf"{SOCKET_ENV}=(\S+)", env)
    assert endpoint, env
    volume_root = str(Path(socket_dir(endpoint.group(1))).parent)
    assert any("install -d -o airflow" in run and volume_root in run.split() for run in by_kw["RUN"])
    # dumb-init must signal only the gateway, which then drains and stops the forker itself.
    assert "DUMB_INIT_SETSID=0" in env


def test_dockerignore_admits_what_the_wheel_needs() -> None:
    ignore = DEPLOY / "Dockerfile.dockerignore"
    lines = [ln.strip() for ln in ignore.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "allow-list: exclude everything first"
    admitted = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "pyproject.toml" in admitted
    assert pyproject["project"]["readme"] in admitted
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in admitted, pattern


# ----------------------------------------------------------------------------- compose


def compose_schema() -> dict[str, Any]:
    """The compose-spec schema as vendored by check-jsonschema (Apache-2.0, compose-spec project)."""
    try:
        ref = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    except ModuleNotFoundError:
        pytest.fail("check-jsonschema (a dev dependency) is not installed: it ships the compose-spec schema")
    schema: dict[str, Any] = json.loads(ref.read_text())
    return schema


def compose_errors(document: Any) -> list[str]:
    schema = compose_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_spec() -> None:
    assert compose_errors(_load(COMPOSE)) == []


def test_compose_schema_rejects_a_broken_file() -> None:
    broken = copy.deepcopy(_load(COMPOSE))
    broken["services"]["zygote"]["stop_grace_priod"] = "90s"
    broken["services"]["dag-processor"]["depends_on"] = 42
    errors = compose_errors(broken)
    assert any("stop_grace_priod" in e for e in errors), errors
    assert any("depends_on" in e for e in errors), errors


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def compose_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (volume name or host path) of a service's volumes."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            # SOURCE:TARGET[:MODE], where SOURCE may be an interpolation such as ${DIR:-./dags}.
            end = volume.index("}") + 1 if volume.startswith("${") else volume.index(":")
            source, target = volume[:end], volume[end + 1 :].split(":")[0]
        else:
            source, target = volume.get("source", ""), volume["target"]
        mounts[target] = source
    return mounts


def compose_command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def test_compose_sidecar_wiring() -> None:
    compose = _load(COMPOSE)
    services = compose["services"]
    for required in ("postgres", "api-server", "scheduler", "dag-processor", "zygote"):
        assert required in services, required
    client, zygote = services["dag-processor"], services["zygote"]
    assert compose_command(client) == ["airflow", "zygote", "dag-processor"]
    assert compose_command(zygote) in ([], ["airflow", "zygote", "serve"])
    assert client["image"] == zygote["image"], "same image, same airflow and Python"

    client_env, zygote_env = compose_env(client), compose_env(zygote)
    assert client_env[SOCKET_ENV] == zygote_env[SOCKET_ENV]
    client_mounts, zygote_mounts = compose_mounts(client), compose_mounts(zygote)
    directory = socket_dir(zygote_env[SOCKET_ENV])
    mount = mount_holding(directory, zygote_mounts)
    assert mount_holding(directory, client_mounts) == mount
    assert client_mounts[mount] == zygote_mounts[mount]
    assert zygote_mounts[mount] in compose.get("volumes", {}), "socket on a named volume"
    assert_socket_below_mount(directory, mount)

    # DAG files and bundle storage at the same paths, from the same sources.
    for option in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH"):
        path = zygote_env[option]
        assert client_env[option] == path
        assert client_mounts[path] == zygote_mounts[path], option

    # Parse-relevant settings identical; the zygote holds no secrets.
    for key in set(client_env) | set(zygote_env):
        if any(key.startswith(p) for p in SECRET_ENV):
            assert key not in zygote_env, f"the zygote must not get {key}"
        elif key.split("__")[1:2] and key.split("__")[1] in PARSE_SECTIONS:
            assert client_env.get(key) == zygote_env.get(key), key

    assert is_status_probe(zygote["healthcheck"]["test"])
    assert client["depends_on"]["zygote"]["condition"] == "service_healthy"
    assert zygote.get("stop_signal", "SIGTERM") == "SIGTERM"
    drain = drain_timeout(zygote_env)
    assert parse_duration(zygote["stop_grace_period"]) > drain
    assert parse_duration(client["stop_grace_period"]) > drain
    assert "ALL" in zygote.get("cap_drop", [])
    assert "no-new-privileges:true" in zygote.get("security_opt", [])


# ----------------------------------------------------------------------------- kubernetes


def k8s_files() -> list[Path]:
    return sorted(K8S_DIR.glob("*.y*ml"))


def k8s_resources() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in k8s_files():
        for doc in _load_all(path):
            yield path, doc


def test_kubernetes_validate_passes_every_manifest() -> None:
    files = k8s_files()
    assert {K8S_CONFIGMAP, K8S_NATIVE, K8S_PLAIN} <= set(files)
    result = _run([_tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, *files])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # kubernetes-validate only warns (exit 0) for a kind it has no schema for: not good enough.
    assert "WARN" not in output and "ERROR" not in output, output
    assert output.count(" passed for resource ") == len(list(k8s_resources())), output


def test_kubernetes_validate_rejects_a_broken_deployment() -> None:
    (deployment,) = (doc for doc in _load_all(K8S_NATIVE) if doc["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["initContainers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "two minutes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def configmap_cfg() -> configparser.ConfigParser:
    (configmap,) = _load_all(K8S_CONFIGMAP)
    cfg = configparser.ConfigParser()
    cfg.read_string(configmap["data"]["airflow.cfg"])
    return cfg


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e.get("value", "")) for e in container.get("env", []) if "value" in e}


def mounts_by_path(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def assert_container_security(container: dict[str, Any], pod_context: dict[str, Any]) -> None:
    context = container.get("securityContext", {})
    name = container["name"]
    assert context.get("allowPrivilegeEscalation") is False, name
    assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, name
    assert context.get("runAsUser", pod_context.get("runAsUser", 50000)) != 0, name
    assert "ALL" in context.get("capabilities", {}).get("drop", []), name
    assert context.get("privileged", False) is False, name


def assert_probes(container: dict[str, Any], kinds: tuple[str, ...]) -> None:
    for kind in kinds:
        probe = container.get(kind)
        assert probe, f"{container['name']} has no {kind}"
        assert is_status_probe(probe["exec"]["command"]), f"{kind}: {probe}"
        assert probe.get("timeoutSeconds", 1) >= 5, f"{kind}: the probe needs seconds to start Python"


def assert_resources(container: dict[str, Any]) -> None:
    resources_ = container.get("resources", {})
    for bound in ("requests", "limits"):
        for what in ("cpu", "memory"):
            assert what in resources_.get(bound, {}), f"{container['name']}: {bound}.{what}"


def pod_parts(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(pod spec, zygote container, dag-processor container) of a Deployment manifest."""
    (deployment,) = (doc for doc in _load_all(path) if doc["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    everything = spec.get("initContainers", []) + spec["containers"]
    by_name = {c["name"]: c for c in everything}
    return spec, by_name["zygote"], by_name["dag-processor"]


@pytest.mark.parametrize("path", [K8S_NATIVE, K8S_PLAIN], ids=["native-sidecar", "second-container"])
def test_kubernetes_sidecar_wiring(path: Path) -> None:
    spec, zygote, client = pod_parts(path)
    if path == K8S_NATIVE:
        assert zygote in spec["initContainers"] and zygote.get("restartPolicy") == "Always"
    else:
        assert zygote in spec["containers"] and "restartPolicy" not in zygote
        assert not spec.get("initContainers")
    assert_probes(zygote, ("startupProbe", "readinessProbe", "livenessProbe"))
    assert zygote["args"] == ["airflow", "zygote", "serve"]
    assert client["args"][:3] == ["airflow", "zygote", "dag-processor"]
    assert zygote["image"] == client["image"]

    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in (zygote, client):
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes, f"{container['name']}: undefined volume {mount['name']}"

    zygote_env, client_env = container_env(zygote), container_env(client)
    assert zygote_env[SOCKET_ENV] == client_env[SOCKET_ENV]
    directory = socket_dir(zygote_env[SOCKET_ENV])
    zygote_mounts, client_mounts = mounts_by_path(zygote), mounts_by_path(client)
    mount = mount_holding(directory, zygote_mounts)
    assert mount_holding(directory, client_mounts) == mount
    assert zygote_mounts[mount]["name"] == client_mounts[mount]["name"]
    assert "emptyDir" in volumes[zygote_mounts[mount]["name"]]
    assert_socket_below_mount(directory, mount)

    # The same airflow.cfg, and the DAG folder and bundle storage it names at the same paths.
    cfg = configmap_cfg()
    config_mounts = [p for p, m in zygote_mounts.items() if m.get("subPath") == "airflow.cfg"]
    assert config_mounts == [p for p, m in client_mounts.items() if m.get("subPath") == "airflow.cfg"]
    (config_path,) = config_mounts
    assert zygote_mounts[config_path]["name"] == client_mounts[config_path]["name"]
    assert zygote_mounts[config_path].get("readOnly") is True
    for section, option in (("core", "dags_folder"), ("dag_processor", "dag_bundle_storage_path")):
        shared = cfg.get(section, option)
        assert zygote_mounts[shared]["name"] == client_mounts[shared]["name"], option

    # No metadata DB credentials or other secrets in the zygote.
    assert not any("valueFrom" in e for e in zygote.get("env", []))
    assert not any(k.startswith(SECRET_ENV) for k in zygote_env)
    assert not zygote.get("envFrom")

    assert_resources(zygote)
    assert_resources(client)
    assert spec["terminationGracePeriodSeconds"] > drain_timeout(zygote_env)

    pod_context = spec.get("securityContext", {})
    assert pod_context.get("runAsNonRoot") is True
    for container in (zygote, client):
        assert_container_security(container, pod_context)
    assert zygote["securityContext"].get("readOnlyRootFilesystem") is True
    # With a read-only root filesystem the zygote still needs a writable /tmp.
    assert "/tmp" in zygote_mounts


def test_kubernetes_variants_differ_only_in_placement() -> None:
    native_spec, native_zygote, native_client = pod_parts(K8S_NATIVE)
    plain_spec, plain_zygote, plain_client = pod_parts(K8S_PLAIN)
    native_zygote = {k: v for k, v in native_zygote.items() if k != "restartPolicy"}
    assert native_zygote == plain_zygote
    assert native_client == plain_client
    assert native_spec["volumes"] == plain_spec["volumes"]


# ----------------------------------------------------------------------------- helm values


def helm_parts() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(values, dagProcessor section, zygote sidecar container)."""
    values = _load(HELM_VALUES)
    section = values["dagProcessor"]
    (zygote,) = (c for c in section["extraContainers"] if c["name"] == "zygote")
    return values, section, zygote


def test_helm_values_sidecar_matches_the_dag_processor() -> None:
    values, section, zygote = helm_parts()
    assert section["enabled"] is True
    assert "exec airflow zygote dag-processor" in " ".join(section["args"])
    assert zygote["args"] == ["airflow", "zygote", "serve"]
    image = values["images"]["airflow"]
    assert zygote["image"] == f"{image['repository']}:{image['tag']}", "same image as the dag-processor"
    # Older chart versions do not template extraContainers.
    assert "{{" not in json.dumps(section["extraContainers"])

    # Every extra mount of the dag-processor (socket dir, bundle storage) is in the sidecar too,
    # from the same volume at the same path.
    zygote_mounts = mounts_by_path(zygote)
    for mount in section["extraVolumeMounts"]:
        assert mount["mountPath"] in zygote_mounts, mount
        assert zygote_mounts[mount["mountPath"]]["name"] == mount["name"], mount

    client_env = {e["name"]: e["value"] for e in section["env"]}
    zygote_env = container_env(zygote)
    assert client_env[SOCKET_ENV] == zygote_env[SOCKET_ENV]
    directory = socket_dir(zygote_env[SOCKET_ENV])
    mount = mount_holding(directory, zygote_mounts)
    assert mount == mount_holding(directory, [m["mountPath"] for m in section["extraVolumeMounts"]])
    (socket_volume,) = (v for v in section["extraVolumes"] if v["name"] == zygote_mounts[mount]["name"])
    assert "emptyDir" in socket_volume
    assert_socket_below_mount(directory, mount)

    # DAG paths: the bundle storage from the chart's airflow.cfg, and the chart's own DAG volume
    # at the chart's default DAG mount path (<airflowHome>/dags).
    storage = values["config"]["dag_processor"]["dag_bundle_storage_path"]
    assert storage in {m["mountPath"] for m in section["extraVolumeMounts"]}
    assert storage in zygote_mounts
    airflow_home = values.get("airflowHome", CHART_AIRFLOW_HOME)
    assert zygote_mounts[f"{airflow_home}/dags"]["name"] == "dags"

    # The chart's airflow.cfg, read from the chart's `config` volume.
    config_dir = str(Path(zygote_env["AIRFLOW_CONFIG"]).parent)
    assert zygote_mounts[config_dir]["name"] == "config"

    extra_volumes = {v["name"] for v in section["extraVolumes"]}
    for mount in zygote["volumeMounts"]:
        assert mount["name"] in extra_volumes | CHART_POD_VOLUMES, mount

    assert_probes(zygote, ("startupProbe", "readinessProbe", "livenessProbe"))
    assert_resources(zygote)
    assert_container_security(zygote, {})
    assert zygote["securityContext"].get("readOnlyRootFilesystem") is True
    assert not any(k.startswith(SECRET_ENV) for k in zygote_env)
    assert not any("valueFrom" in e for e in zygote.get("env", []))
    assert section["terminationGracePeriodSeconds"] > drain_timeout(zygote_env)


def test_helm_sidecar_is_a_valid_pod_spec() -> None:
    """Rebuild the dag-processor pod the chart would render around the values; validate it."""
    values, section, _ = helm_parts()
    image = values["images"]["airflow"]
    dag_processor = {
        "name": "dag-processor",
        "image": f"{image['repository']}:{image['tag']}",
        "args": section["args"],
        "env": section["env"],
        "volumeMounts": section["extraVolumeMounts"],
    }
    chart_volumes = [
        {"name": "config", "configMap": {"name": "release-config"}},
        {"name": "dags", "emptyDir": {}},
        {"name": "logs", "emptyDir": {}},
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dag-processor"},
        "spec": {
            "terminationGracePeriodSeconds": section["terminationGracePeriodSeconds"],
            "containers": [dag_processor, *section["extraContainers"]],
            "volumes": chart_volumes + section["extraVolumes"],
        },
    }
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


# ----------------------------------------------------------------------------- yamllint, README


def deploy_yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") or p.name == ".yamllint")


def test_yamllint_passes_every_yaml_file() -> None:
    files = deploy_yaml_files()
    assert {COMPOSE, HELM_VALUES, K8S_NATIVE, K8S_PLAIN, K8S_CONFIGMAP} <= set(files)
    result = _run([_tool("yamllint"), "--strict", "-f", "parsable", "-c", YAMLLINT_CONFIG, *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_fails_on_bad_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("---\nkey: 1\nkey: 2\nenabled: yes\ntrailing: x   \n")
    result = _run([_tool("yamllint"), "--strict", "-f", "parsable", "-c", YAMLLINT_CONFIG, bad])
    assert result.returncode != 0
    for rule in ("key-duplicates", "truthy", "trailing-spaces"):
        assert rule in result.stdout, result.stdout


def test_readme_covers_each_deployment() -> None:
    text = README.read_text()
    # Every file or directory of deploy/ the README names (a suffix or a trailing slash) exists.
    for path in re.findall(r"(?<![\w/])deploy/[\w./-]*(?:\.\w+|/)", text):
        assert (REPO / path).exists(), f"README names a missing file: {path}"
    for needle in (
        "values-zygote.yaml",
        "airflow zygote reload",
        "--bundle-name",
        "dag_bundle_storage_path",
        "docker compose",
        "kubectl apply",
        "helm upgrade",
    ):
        assert needle in text, needle
