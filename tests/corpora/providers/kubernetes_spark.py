"""SparkApplication through the Spark operator, spec built as a dict at parse time."""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
from airflow.sdk import DAG
from corp_helpers import k8s
from corp_helpers.defaults import DEFAULT_ARGS, START, tags

TEMPLATE = {
    "spark": {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "version": "v1beta2",
        "kind": "SparkApplication",
        "apiGroup": "sparkoperator.k8s.io",
        "metadata": {"namespace": k8s.NAMESPACE},
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": "corpus/spark:3.5",
            "mainApplicationFile": "local:///opt/jobs/aggregate.py",
            "sparkVersion": "3.5.0",
            "driver": {"cores": 1, "memory": "1g", "serviceAccount": "spark"},
            "executor": {"cores": 2, "instances": 2, "memory": "2g"},
        },
    },
    "kubernetes": {"env_vars": [], "node_selector": {}, "affinity": {}, "tolerations": []},
}

with DAG(
    "kubernetes_spark",
    schedule="@daily",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("k8s", "spark"),
):
    SparkKubernetesOperator(
        task_id="spark_aggregate", namespace=k8s.NAMESPACE, template_spec=TEMPLATE, name="aggregate", get_logs=True
    )
