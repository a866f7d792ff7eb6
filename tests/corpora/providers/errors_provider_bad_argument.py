"""An operator constructed with an argument it does not take: the error is raised by Airflow's operator code."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.s3 import S3CreateBucketOperator
from airflow.sdk import DAG
from corp_helpers.defaults import START

with DAG("errors_provider_bad_argument", schedule=None, start_date=START):
    S3CreateBucketOperator(task_id="create", bucket_name="corpus-raw", bucket_region="eu-west-1")
