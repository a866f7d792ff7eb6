"""Stages of a pipeline as TaskGroups of pods, with per-stage resources."""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG
from airflow.sdk.definitions.taskgroup import TaskGroup
from corp_helpers import k8s
from corp_helpers.defaults import DEFAULT_ARGS, START, tags
from kubernetes.client import models as k8s_models

STAGES = {"extract": ("500m", "512Mi"), "transform": ("2", "4Gi"), "load": ("250m", "256Mi")}

with DAG(
    "kubernetes_taskgroups",
    schedule="@daily",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("k8s", "taskgroup"),
):
    previous = None
    for stage, (cpu, memory) in STAGES.items():
        with TaskGroup(group_id=stage) as group:
            for shard in range(3):
                KubernetesPodOperator(
                    task_id=f"shard_{shard}",
                    namespace=k8s.NAMESPACE,
                    image=f"corpus/{stage}:2.0",
                    name=f"{stage}-{shard}",
                    arguments=["--shard", str(shard)],
                    container_resources=k8s_models.V1ResourceRequirements(requests={"cpu": cpu, "memory": memory}),
                    on_finish_action="delete_pod",
                )
        if previous is not None:
            previous >> group
        previous = group
