"""A provider module that refuses to import without an optional dependency (Dataflow needs apache-beam)."""

from __future__ import annotations

from airflow.providers.google.cloud.operators.dataflow import DataflowTemplatedJobStartOperator
from airflow.sdk import DAG
from corp_helpers.defaults import START

with DAG("errors_optional_feature", schedule=None, start_date=START):
    DataflowTemplatedJobStartOperator(task_id="run", template="gs://dataflow-templates/latest/Word_Count")
