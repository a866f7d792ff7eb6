"""Pub/Sub topic and messages; message payloads are pyarrow-serialised at parse time."""

from __future__ import annotations

import base64

import pyarrow as pa
from airflow.providers.google.cloud.operators.pubsub import PubSubCreateTopicOperator, PubSubPublishMessageOperator
from airflow.sdk import DAG
from corp_helpers import frames, gcp
from corp_helpers.defaults import DEFAULT_ARGS, START, tags

TABLE = pa.Table.from_pandas(frames.COUNTRIES, preserve_index=False)
SINK = pa.BufferOutputStream()
with pa.ipc.new_stream(SINK, TABLE.schema) as writer:
    writer.write_table(TABLE)
PAYLOAD = base64.b64encode(SINK.getvalue().to_pybytes()[:64]).decode()

with DAG(
    "google_pubsub",
    schedule="@hourly",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("gcp", "pubsub"),
):
    topic = PubSubCreateTopicOperator(
        task_id="create_topic", topic="corpus-events", project_id=gcp.PROJECT_ID, fail_if_exists=False
    )
    publish = PubSubPublishMessageOperator(
        task_id="publish",
        topic="corpus-events",
        project_id=gcp.PROJECT_ID,
        messages=[{"data": PAYLOAD.encode(), "attributes": {"rows": "5"}}],
    )
    topic >> publish
