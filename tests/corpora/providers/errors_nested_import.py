"""Import error raised two imports down (DAG file -> nested_outer -> nested_inner)."""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG
from corp_helpers.defaults import START
from corp_helpers.nested_outer import TABLE_COUNT

with DAG("errors_nested_import", schedule=None, start_date=START):
    KubernetesPodOperator(task_id="count", image="busybox", name="count", arguments=[str(TABLE_COUNT)])
