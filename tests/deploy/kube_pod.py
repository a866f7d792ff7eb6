"""deploy/kubernetes/ through ``podman play kube``, as far as podman 4.3 supports the manifests.

Run: the ConfigMap (``--configmap``) and the plain-sidecar Deployment, on a copy that changes only
what a cluster would provide: the image (the one the tests built), the ``airflow-dags`` claim (a
podman volume of a per-test name holding one DAG file), the two Secrets (podman secrets in the JSON
form ``play kube`` reads), a hostPath for the SQLite metadata DB the Secret's connection points at
(a cluster points it at its PostgreSQL; the caller provides it migrated), and the ``airflow.cfg``
mount: podman 4.3 ignores ``subPath``, so the ConfigMap is mounted as a folder with
``AIRFLOW_CONFIG`` naming the file in it.

Not run: the native-sidecar variant (podman 4.3 runs every init container to completion before the
pod's containers, so an ``initContainers`` entry with ``restartPolicy: Always`` never lets the pod
start) and the probes' timing (podman turns only ``livenessProbe`` into a health check, and nothing
runs it on a timer without systemd).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import yaml
from podman_support import REPO, Container, podman

KUBE = REPO / "deploy" / "kubernetes"
DB_DIR = "/opt/airflow/db"
CONFIG_DIR = "/opt/airflow/config"
DAG_ID = "kubed"
DAG = (
    "from __future__ import annotations\nimport datetime\nfrom airflow.sdk import DAG\n"
    f"with DAG({DAG_ID!r}, schedule=None, start_date=datetime.datetime(2024, 1, 1)):\n    pass\n"
)


class Pod:
    def __init__(self, root: Path, image: str) -> None:
        self.root = root
        self.image = image
        self.tag = os.urandom(4).hex()
        self.claim = f"airflow-dags-{self.tag}"
        self.secrets = {"airflow-metadata": f"zt-metadata-{self.tag}", "airflow-fernet-key": f"zt-fernet-{self.tag}"}
        self.manifest = root / "deployment.yaml"
        self.db_dir = root / "db"

    @property
    def db(self) -> Path:
        return self.db_dir / "airflow.db"

    def play(self) -> None:
        """Volumes, secrets and the adapted manifest, then ``podman play kube`` (the DB is in place)."""
        podman("volume", "create", self.claim)
        mountpoint = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", self.claim).stdout.strip())
        (mountpoint / f"{DAG_ID}.py").write_text(DAG)
        conn = f"sqlite:///{DB_DIR}/airflow.db"
        fernet = base64.urlsafe_b64encode(os.urandom(32)).decode()
        contents = {"airflow-metadata": ("connection", conn), "airflow-fernet-key": ("fernet-key", fernet)}
        for name, (key, value) in contents.items():
            data = self.root / f"{name}.json"
            data.write_text(json.dumps({key: base64.b64encode(value.encode()).decode()}))
            podman("secret", "create", self.secrets[name], str(data))
        spec = yaml.safe_load((KUBE / "dag-processor-sidecar-container.yaml").read_text())
        self.manifest.write_text(yaml.safe_dump(self.adapted(spec), sort_keys=False))
        podman("play", "kube", "--configmap", str(KUBE / "airflow-config.yaml"), str(self.manifest))

    def adapted(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The manifest with what a cluster provides swapped for local things (module docstring)."""
        spec["metadata"]["name"] = f"zt-{self.tag}"
        pod = spec["spec"]["template"]["spec"]
        for volume in pod["volumes"]:
            if "persistentVolumeClaim" in volume:
                volume["persistentVolumeClaim"]["claimName"] = self.claim
        pod["volumes"].append({"name": "metadata-db", "hostPath": {"path": str(self.db_dir), "type": "Directory"}})
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
        if self.manifest.exists():
            podman("play", "kube", "--down", str(self.manifest), check=False)
        # --down leaves the ConfigMap's volume behind.
        for volume in (self.claim, "airflow-dag-processor-config"):
            podman("volume", "rm", "-f", volume, check=False)
        for secret in self.secrets.values():
            podman("secret", "rm", secret, check=False)
