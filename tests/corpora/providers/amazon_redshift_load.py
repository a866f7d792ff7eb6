"""S3 to Redshift loads for several tables, pyarrow schema for the column list."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.redshift_data import RedshiftDataOperator
from airflow.providers.amazon.aws.transfers.s3_to_redshift import S3ToRedshiftOperator
from airflow.sdk import DAG
from airflow.sdk.definitions.taskgroup import TaskGroup
from corp_helpers import aws, frames
from corp_helpers.defaults import DEFAULT_ARGS, START, tags

COLUMNS = frames.arrow_columns()
TABLES = ["events", "events_backfill", "events_replay"]

with DAG(
    "amazon_redshift_load",
    schedule="@daily",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("aws", "redshift"),
):
    with TaskGroup("load") as load:
        for table in TABLES:
            S3ToRedshiftOperator(
                task_id=f"copy_{table}",
                s3_bucket=aws.bucket_name("warehouse", "exports"),
                s3_key=f"{table}/",
                schema="analytics",
                table=table,
                column_list=COLUMNS,
                copy_options=["FORMAT AS PARQUET"],
            )
    vacuum = RedshiftDataOperator(
        task_id="analyze",
        cluster_identifier="corpus-cluster",
        database="analytics",
        db_user="airflow",
        sql=[f"ANALYZE analytics.{t};" for t in TABLES],
    )
    load >> vacuum
