"""Waits on a DynamoDB item, then starts a Step Functions execution."""

from __future__ import annotations

import json

from airflow.providers.amazon.aws.operators.step_function import StepFunctionStartExecutionOperator
from airflow.providers.amazon.aws.sensors.dynamodb import DynamoDBValueSensor
from airflow.sdk import DAG
from corp_helpers import aws
from corp_helpers.defaults import DEFAULT_ARGS, START, tags

DYNAMO = aws.session().resource("dynamodb")
TABLE = DYNAMO.Table("corpus-control")

with DAG(
    "amazon_dynamodb_sensor",
    schedule="@daily",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("aws", "dynamodb"),
):
    ready = DynamoDBValueSensor(
        task_id="wait_ready",
        table_name=TABLE.name,
        partition_key_name="job",
        partition_key_value="nightly",
        attribute_name="state",
        attribute_value="READY",
        poke_interval=60,
    )
    start = StepFunctionStartExecutionOperator(
        task_id="start_state_machine",
        state_machine_arn="arn:aws:states:eu-west-1:000000000000:stateMachine:corpus",
        state_machine_input=json.dumps({"date": "{{ ds }}"}),
    )
    ready >> start
