"""GKE pod with kubernetes models for resources and volumes, like example_kubernetes_engine."""

from __future__ import annotations

from airflow.providers.google.cloud.operators.kubernetes_engine import GKEStartPodOperator
from airflow.sdk import DAG
from corp_helpers import gcp, k8s
from corp_helpers.defaults import DEFAULT_ARGS, START, tags

with DAG(
    "google_gke_pod", schedule=None, start_date=START, catchup=False, default_args=DEFAULT_ARGS, tags=tags("gcp", "gke")
):
    GKEStartPodOperator(
        task_id="pod_task",
        project_id=gcp.PROJECT_ID,
        location=gcp.LOCATION,
        cluster_name="corpus-gke",
        namespace=k8s.NAMESPACE,
        image="python:3.12-slim",
        cmds=["python", "-c", "print('hi')"],
        name="gke-pod",
        container_resources=k8s.RESOURCES,
        volumes=[k8s.SCRATCH],
        volume_mounts=[k8s.SCRATCH_MOUNT],
        env_vars=k8s.env(STAGE="prod"),
        on_finish_action="delete_pod",
    )
