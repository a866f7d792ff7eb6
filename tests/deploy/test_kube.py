"""deploy/kubernetes/ through ``podman play kube``, as far as podman 4.3 supports the manifests.

Run: the ConfigMap (``--configmap``) and the plain-sidecar Deployment, on a copy that changes only
what a cluster would provide: the image (the one the container test built), the ``airflow-dags``
claim (a podman volume of a per-test name holding one DAG file), the two Secrets (podman secrets
in the JSON form ``play kube`` reads), a hostPath for the SQLite metadata DB the Secret's
connection points at (a cluster points it at its PostgreSQL), and the ``airflow.cfg`` mount: podman
4.3 ignores ``subPath``, so the ConfigMap is mounted as a folder with ``AIRFLOW_CONFIG`` naming the
file in it. Checks: the pod's zygote serves the
dag-processor over the shared ``emptyDir`` socket, the DAG's row is written, and the zygote's
container holds no metadata-DB settings; and records which manifest fields podman applied.

Not run: the native-sidecar variant (podman 4.3 runs every init container to completion before the
pod's containers, so an ``initContainers`` entry with ``restartPolicy: Always`` never lets the pod
start) and the probes' timing (podman turns only ``livenessProbe`` into a health check, and nothing
runs it on a timer without systemd).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from podman_support import REPO, Container, build_images, podman, rows, wait_for

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

KUBE = REPO / "deploy" / "kubernetes"
DB_DIR = "/opt/airflow/db"
CONFIG_DIR = "/opt/airflow/config"
DEADLINE_S = 420.0
DAG = (
    "from __future__ import annotations\nimport datetime\nfrom airflow.sdk import DAG\n"
    "with DAG('kubed', schedule=None, start_date=datetime.datetime(2024, 1, 1)):\n    pass\n"
)


class Pod:
    def __init__(self, root: Path, image: str) -> None:
        self.root = root
        self.image = image
        self.tag = os.urandom(4).hex()
        self.claim = f"airflow-dags-{self.tag}"
        self.secrets = {"airflow-metadata": f"zt-metadata-{self.tag}", "airflow-fernet-key": f"zt-fernet-{self.tag}"}
        self.manifest = root / "deployment.yaml"

    def prepare(self) -> None:
        podman("volume", "create", self.claim)
        mountpoint = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", self.claim).stdout.strip())
        (mountpoint / "kubed.py").write_text(DAG)
        db = self.root / "db"
        db.mkdir()
        os.chown(db, 50000, 0)
        conn = f"sqlite:///{DB_DIR}/airflow.db"
        fernet = base64.urlsafe_b64encode(os.urandom(32)).decode()
        podman(
            "run", "--rm", "--network", "none", "-v", f"{db}:{DB_DIR}",
            "-e", f"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN={conn}", self.image, "airflow", "db", "migrate",
        )  # fmt: skip
        contents = {"airflow-metadata": ("connection", conn), "airflow-fernet-key": ("fernet-key", fernet)}
        for name, (key, value) in contents.items():
            data = self.root / f"{name}.json"
            data.write_text(json.dumps({key: base64.b64encode(value.encode()).decode()}))
            podman("secret", "create", self.secrets[name], str(data))
        spec = yaml.safe_load((KUBE / "dag-processor-sidecar-container.yaml").read_text())
        self.manifest.write_text(yaml.safe_dump(self.adapted(spec, db), sort_keys=False))

    def adapted(self, spec: dict[str, Any], db: Path) -> dict[str, Any]:
        """The manifest with what a cluster provides swapped for local things (module docstring)."""
        spec["metadata"]["name"] = f"zt-{self.tag}"
        pod = spec["spec"]["template"]["spec"]
        for volume in pod["volumes"]:
            if "persistentVolumeClaim" in volume:
                volume["persistentVolumeClaim"]["claimName"] = self.claim
        pod["volumes"].append({"name": "metadata-db", "hostPath": {"path": str(db), "type": "Directory"}})
        for container in pod["containers"]:
            container["image"] = self.image
            # podman 4.3 ignores subPath: the ConfigMap volume would land as a directory named
            # airflow.cfg. Mount it as a directory and point AIRFLOW_CONFIG at the file in it.
            for mount in container["volumeMounts"]:
                if mount.pop("subPath", None):
                    mount["mountPath"] = CONFIG_DIR
                    container["env"].append({"name": "AIRFLOW_CONFIG", "value": f"{CONFIG_DIR}/airflow.cfg"})
            for env in container["env"]:
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    ref["name"] = self.secrets[ref["name"]]
            if container["name"] == "dag-processor":
                container["volumeMounts"].append({"name": "metadata-db", "mountPath": DB_DIR})
        return spec

    def container(self, name: str) -> Container:
        return Container(f"zt-{self.tag}-pod-0-{name}")

    def close(self) -> None:
        podman("play", "kube", "--down", str(self.manifest), check=False)
        # --down leaves the ConfigMap's volume behind.
        for volume in (self.claim, "airflow-dag-processor-config"):
            podman("volume", "rm", "-f", volume, check=False)
        for secret in self.secrets.values():
            podman("secret", "rm", secret, check=False)


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    root = tmp_path_factory.mktemp("kube")
    root.chmod(0o755)
    pod = Pod(root, build_images())
    try:
        pod.prepare()
        podman("play", "kube", "--configmap", str(KUBE / "airflow-config.yaml"), str(pod.manifest))
        yield pod
    finally:
        pod.close()


def test_play_kube_sidecar_pod_parses_through_the_zygote(pod: Pod) -> None:
    zygote, client = pod.container("zygote"), pod.container("dag-processor")
    db = pod.root / "db" / "airflow.db"

    def parsed() -> bool:
        try:
            return ("kubed",) in rows(db, "select dag_id from serialized_dag")
        except sqlite3.OperationalError:
            return False

    wait_for(parsed, DEADLINE_S, "the DAG parsed in the pod", interval=3.0)
    report = wait_for(zygote.status, DEADLINE_S, "the zygote's status")
    assert sum(int(n) for n in report.get("requests", {}).values()) >= 1, report
    env = zygote.inspect()["Config"]["Env"]
    assert [e for e in env if e.startswith(("AIRFLOW__DATABASE__", "AIRFLOW__CORE__FERNET_KEY"))] == []
    assert any(e.startswith("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=") for e in client.inspect()["Config"]["Env"])

    applied = {}
    for container in (zygote, client):
        host = container.inspect()["HostConfig"]
        applied[container.name] = {
            "read_only_rootfs": host.get("ReadonlyRootfs"),
            "cap_drop_all": len(host.get("CapDrop") or []) >= 10,
            "memory_limit": host.get("Memory"),
            "stop_timeout": container.inspect()["Config"].get("StopTimeout"),
            "user": container.inspect()["Config"].get("User"),
        }
    print("play kube applied:", json.dumps(applied, indent=1))
    assert all(fields["read_only_rootfs"] and fields["cap_drop_all"] for fields in applied.values()), applied
