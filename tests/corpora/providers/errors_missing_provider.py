"""ModuleNotFoundError: a provider that is not installed (stock also warns when pre-importing it)."""

from __future__ import annotations

from airflow.providers.snowflake.operators.snowflake import SnowflakeSqlApiOperator
from airflow.sdk import DAG
from corp_helpers.defaults import START

with DAG("errors_missing_provider", schedule=None, start_date=START):
    SnowflakeSqlApiOperator(task_id="query", sql="SELECT 1")
