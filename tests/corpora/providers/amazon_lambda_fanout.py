"""Lambda invocations mapped over payloads built from a pandas frame at parse time."""

from __future__ import annotations

import json

from airflow.providers.amazon.aws.operators.lambda_function import LambdaInvokeFunctionOperator
from airflow.sdk import DAG
from corp_helpers import aws, frames
from corp_helpers.defaults import DEFAULT_ARGS, START, tags

LAMBDA = aws.client("lambda")
PAYLOADS = [json.dumps({"country": row.code, "weight": row.weight}) for row in frames.COUNTRIES.itertuples()]

with DAG(
    "amazon_lambda_fanout",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("aws", "lambda", "mapping"),
):
    LambdaInvokeFunctionOperator.partial(
        task_id="score_country",
        function_name="corpus-scorer",
        invocation_type="Event",
        region_name=LAMBDA.meta.region_name,
    ).expand(payload=PAYLOADS)
