"""Mapped pods: one per country code, the list read from a pandas frame."""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG
from corp_helpers import frames, k8s
from corp_helpers.defaults import DEFAULT_ARGS, START, tags

COMMANDS = [["python", "-m", "jobs.country", code] for code in frames.COUNTRIES["code"]]

with DAG(
    "kubernetes_pod_mapped",
    schedule="@daily",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("k8s", "mapping"),
):
    KubernetesPodOperator.partial(
        task_id="country",
        namespace=k8s.NAMESPACE,
        image="corpus/jobs:1.4",
        name="country-job",
        container_resources=k8s.RESOURCES,
        on_finish_action="delete_pod",
    ).expand(arguments=COMMANDS)
