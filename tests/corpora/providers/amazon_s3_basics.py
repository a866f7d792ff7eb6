"""S3 bucket lifecycle in the style of the Amazon provider's example_s3 DAG."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.s3 import (
    S3CreateBucketOperator,
    S3CreateObjectOperator,
    S3DeleteBucketOperator,
    S3ListOperator,
)
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk import DAG, chain
from corp_helpers import aws
from corp_helpers.defaults import DEFAULT_ARGS, START, env_id, tags

ENV_ID = env_id()
BUCKET = aws.bucket_name(ENV_ID, "raw")
S3 = aws.client("s3")
KEY = f"landing/{S3.meta.region_name}/data.csv"

with DAG(
    "amazon_s3_basics",
    schedule="@daily",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("aws", "s3"),
):
    create_bucket = S3CreateBucketOperator(task_id="create_bucket", bucket_name=BUCKET, region_name=aws.REGION)
    put = S3CreateObjectOperator(
        task_id="put_object", s3_bucket=BUCKET, s3_key=KEY, data="id,value\n1,2\n", replace=True
    )
    wait = S3KeySensor(
        task_id="wait_for_key", bucket_name=BUCKET, bucket_key=KEY, poke_interval=30, timeout=600, mode="reschedule"
    )
    listing = S3ListOperator(task_id="list_keys", bucket=BUCKET, prefix="landing/")
    delete_bucket = S3DeleteBucketOperator(
        task_id="delete_bucket", bucket_name=BUCKET, force_delete=True, trigger_rule="all_done"
    )
    chain(create_bucket, put, wait, listing, delete_bucket)
