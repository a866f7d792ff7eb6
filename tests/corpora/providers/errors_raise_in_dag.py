"""Import error raised by the DAG file itself, after the providers it uses were imported."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.s3 import S3CreateBucketOperator
from airflow.sdk import DAG
from corp_helpers import aws
from corp_helpers.defaults import START

TARGETS = {"eu": aws.bucket_name("eu", "raw")}
TARGET = TARGETS.get("us") or None
if TARGET is None:
    raise ValueError("errors_raise_in_dag: no bucket configured for region 'us'")

with DAG("errors_raise_in_dag", schedule=None, start_date=START):
    S3CreateBucketOperator(task_id="create", bucket_name=TARGET)
