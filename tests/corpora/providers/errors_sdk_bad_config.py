"""An error raised inside botocore while building a client config at parse time (a retry mode that does not exist)."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.sqs import SqsPublishOperator
from airflow.sdk import DAG
from botocore.config import Config
from corp_helpers import aws
from corp_helpers.defaults import START

FAST_RETRIES = Config(region_name=aws.REGION, retries={"max_attempts": 3, "mode": "fast"})

with DAG("errors_sdk_bad_config", schedule=None, start_date=START):
    SqsPublishOperator(task_id="publish", sqs_queue="corpus", message_content="x")
