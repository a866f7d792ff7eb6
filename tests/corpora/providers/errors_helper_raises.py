"""Import error raised inside a helper module this DAG file imports."""

from __future__ import annotations

from airflow.providers.google.cloud.operators.gcs import GCSCreateBucketOperator
from airflow.sdk import DAG
from corp_helpers.broken_config import WAREHOUSE_BUCKET
from corp_helpers.defaults import START

with DAG("errors_helper_raises", schedule=None, start_date=START):
    GCSCreateBucketOperator(task_id="create", bucket_name=WAREHOUSE_BUCKET)
