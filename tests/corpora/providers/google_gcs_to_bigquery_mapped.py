"""One load job per partition file, mapped at run time; partitions computed with pandas at parse time."""

from __future__ import annotations

from airflow.providers.google.cloud.transfers.gcs_to_bigquery import GCSToBigQueryOperator
from airflow.sdk import DAG, task
from corp_helpers import frames, gcp
from corp_helpers.defaults import DEFAULT_ARGS, START, tags

SCHEMA = gcp.schema(("event_id", "STRING"), ("amount", "FLOAT"))

with DAG(
    "google_gcs_to_bigquery_mapped",
    schedule="@daily",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("gcp", "mapping"),
):

    @task
    def partition_files() -> list[list[str]]:
        return [[f"events/dt={p}/part-0.parquet"] for p in frames.partitions(7)]

    GCSToBigQueryOperator.partial(
        task_id="load_partition",
        bucket="corpus-events",
        destination_project_dataset_table="corpus.events",
        source_format="PARQUET",
        schema_fields=SCHEMA,
        write_disposition="WRITE_APPEND",
    ).expand(source_objects=partition_files())
