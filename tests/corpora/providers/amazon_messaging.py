"""SQS and SNS: publish, wait for a message, notify."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.sns import SnsPublishOperator
from airflow.providers.amazon.aws.operators.sqs import SqsPublishOperator
from airflow.providers.amazon.aws.sensors.sqs import SqsSensor
from airflow.sdk import DAG
from corp_helpers import aws
from corp_helpers.defaults import DEFAULT_ARGS, START, tags

SQS = aws.client("sqs")
QUEUE = f"https://sqs.{SQS.meta.region_name}.amazonaws.com/000000000000/corpus-events"

with DAG(
    "amazon_messaging",
    schedule="*/30 * * * *",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("aws", "sqs", "sns"),
):
    publish = SqsPublishOperator(task_id="publish", sqs_queue=QUEUE, message_content="{{ ts }}")
    receive = SqsSensor(task_id="receive", sqs_queue=QUEUE, max_messages=5, num_batches=2, mode="reschedule")
    notify = SnsPublishOperator(
        task_id="notify",
        target_arn="arn:aws:sns:eu-west-1:000000000000:corpus",
        message="batch received",
        subject="corpus",
    )
    publish >> receive >> notify
