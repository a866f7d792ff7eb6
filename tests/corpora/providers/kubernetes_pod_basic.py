"""KubernetesPodOperator in the style of the cncf-kubernetes provider's example_kubernetes DAG."""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG
from corp_helpers import k8s
from corp_helpers.defaults import DEFAULT_ARGS, START, tags
from kubernetes.client import models as k8s_models

SECRET_ENV = k8s_models.V1EnvVar(
    name="API_TOKEN",
    value_from=k8s_models.V1EnvVarSource(secret_key_ref=k8s_models.V1SecretKeySelector(name="corpus", key="token")),
)
INIT = k8s_models.V1Container(
    name="init", image="busybox:1.36", command=["sh", "-c", "echo init > /scratch/x"], volume_mounts=[k8s.SCRATCH_MOUNT]
)

with DAG(
    "kubernetes_pod_basic", schedule=None, start_date=START, catchup=False, default_args=DEFAULT_ARGS, tags=tags("k8s")
):
    KubernetesPodOperator(
        task_id="pod",
        namespace=k8s.NAMESPACE,
        image="python:3.12-slim",
        cmds=["python", "-c"],
        arguments=["print('hello')"],
        labels={"team": "data"},
        name="basic-pod",
        container_resources=k8s.RESOURCES,
        volumes=[k8s.SCRATCH],
        volume_mounts=[k8s.SCRATCH_MOUNT],
        init_containers=[INIT],
        affinity=k8s.AFFINITY,
        tolerations=k8s.TOLERATIONS,
        env_vars=[*k8s.env(STAGE="prod"), SECRET_ENV],
        get_logs=True,
        on_finish_action="delete_pod",
    )
