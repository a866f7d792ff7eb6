"""Dynamic task mapping over S3 prefixes: one delete per partition, computed at run time."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.s3 import S3DeleteObjectsOperator
from airflow.sdk import DAG, task
from corp_helpers import aws, frames
from corp_helpers.defaults import DEFAULT_ARGS, START, env_id, tags

ENV_ID = env_id()
BUCKET = aws.bucket_name(ENV_ID, "staging")
PARTITIONS = frames.partitions(14)

with DAG(
    "amazon_s3_mapped_cleanup",
    schedule="@weekly",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("aws", "mapping"),
):

    @task
    def expired_prefixes(partitions: list[str]) -> list[str]:
        return [f"events/dt={p}/" for p in partitions[:-7]]

    S3DeleteObjectsOperator.partial(task_id="delete_partition", bucket=BUCKET).expand(
        prefix=expired_prefixes(PARTITIONS)
    )
