"""KubernetesJobOperator with parallelism, like example_kubernetes_job."""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator
from airflow.sdk import DAG
from corp_helpers import k8s
from corp_helpers.defaults import DEFAULT_ARGS, START, tags

with DAG(
    "kubernetes_job", schedule=None, start_date=START, catchup=False, default_args=DEFAULT_ARGS, tags=tags("k8s", "job")
):
    KubernetesJobOperator(
        task_id="job",
        namespace=k8s.NAMESPACE,
        image="perl:5.34.0",
        cmds=["perl", "-Mbignum=bpi", "-wle", "print bpi(200)"],
        name="pi-job",
        parallelism=2,
        completions=4,
        backoff_limit=3,
        container_resources=k8s.RESOURCES,
        wait_until_job_complete=False,
    )
