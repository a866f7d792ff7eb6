"""ModuleNotFoundError: a client library nobody installed, imported next to a real provider."""

from __future__ import annotations

import databricks_corpus_sdk
from airflow.providers.amazon.aws.operators.s3 import S3ListOperator
from airflow.sdk import DAG
from corp_helpers.defaults import START

with DAG("errors_missing_library", schedule=None, start_date=START):
    S3ListOperator(task_id="list", bucket=databricks_corpus_sdk.BUCKET)
