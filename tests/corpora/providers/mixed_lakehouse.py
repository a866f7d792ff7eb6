"""One pipeline across all three providers: S3 export, GCS copy, BigQuery load, a pod to validate."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.s3 import S3ListOperator
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.google.cloud.operators.bigquery import BigQueryInsertJobOperator
from airflow.providers.google.cloud.transfers.gcs_to_bigquery import GCSToBigQueryOperator
from airflow.sdk import DAG
from airflow.sdk.definitions.taskgroup import TaskGroup
from corp_helpers import aws, frames, gcp, k8s
from corp_helpers.defaults import DEFAULT_ARGS, START, env_id, tags

ENV_ID = env_id()
S3 = aws.client("s3")
BQ = gcp.bigquery_client()
COLUMNS = frames.arrow_columns()

with DAG(
    "mixed_lakehouse",
    schedule="@daily",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("aws", "gcp", "k8s"),
):
    with TaskGroup("ingest") as ingest:
        S3ListOperator(task_id="list_exports", bucket=aws.bucket_name(ENV_ID, "exports"), prefix="events/")
        GCSToBigQueryOperator(
            task_id="load",
            bucket="corpus-lake",
            source_objects=["events/*.parquet"],
            destination_project_dataset_table=f"{BQ.project}.lake.events",
            source_format="PARQUET",
        )
    merge = BigQueryInsertJobOperator(
        task_id="merge",
        configuration={"query": {"query": f"SELECT {', '.join(COLUMNS)} FROM lake.events", "useLegacySql": False}},
    )
    validate = KubernetesPodOperator(
        task_id="validate",
        namespace=k8s.NAMESPACE,
        image="corpus/validate:1",
        name="validate",
        container_resources=k8s.RESOURCES,
    )
    ingest >> merge >> validate
