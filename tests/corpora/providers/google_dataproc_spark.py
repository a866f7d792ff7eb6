"""Dataproc cluster from ClusterGenerator, a Spark job, teardown; like example_dataproc_spark."""

from __future__ import annotations

from airflow.providers.google.cloud.operators.dataproc import (
    ClusterGenerator,
    DataprocCreateClusterOperator,
    DataprocDeleteClusterOperator,
    DataprocSubmitJobOperator,
)
from airflow.sdk import DAG
from corp_helpers import gcp
from corp_helpers.defaults import DEFAULT_ARGS, START, env_id, tags

ENV_ID = env_id()
CLUSTER = f"cluster-{ENV_ID}"[:50]
CLUSTER_CONFIG = ClusterGenerator(
    project_id=gcp.PROJECT_ID,
    num_workers=2,
    master_machine_type="n1-standard-4",
    worker_machine_type="n1-standard-4",
    storage_bucket="corpus-dataproc",
).make()
SPARK_JOB = {
    "reference": {"project_id": gcp.PROJECT_ID},
    "placement": {"cluster_name": CLUSTER},
    "spark_job": {
        "jar_file_uris": ["file:///usr/lib/spark/examples/jars/spark-examples.jar"],
        "main_class": "org.apache.spark.examples.SparkPi",
    },
}

with DAG(
    "google_dataproc_spark",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("gcp", "dataproc"),
):
    create = DataprocCreateClusterOperator(
        task_id="create_cluster",
        project_id=gcp.PROJECT_ID,
        cluster_config=CLUSTER_CONFIG,
        region=gcp.LOCATION,
        cluster_name=CLUSTER,
    )
    job = DataprocSubmitJobOperator(task_id="spark_task", job=SPARK_JOB, region=gcp.LOCATION, project_id=gcp.PROJECT_ID)
    delete = DataprocDeleteClusterOperator(
        task_id="delete_cluster",
        project_id=gcp.PROJECT_ID,
        cluster_name=CLUSTER,
        region=gcp.LOCATION,
        trigger_rule="all_done",
    )
    create >> job >> delete
