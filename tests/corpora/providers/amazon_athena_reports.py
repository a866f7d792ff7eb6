"""Athena queries per report, one TaskGroup per report family."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.athena import AthenaOperator
from airflow.sdk import DAG
from airflow.sdk.definitions.taskgroup import TaskGroup
from corp_helpers import aws
from corp_helpers.defaults import DEFAULT_ARGS, START, tags

REPORTS = {"sales": ["daily_revenue", "refunds"], "ops": ["late_shipments", "stockouts", "returns"]}
OUTPUT = f"s3://{aws.bucket_name('reports', 'athena')}/results/"

with DAG(
    "amazon_athena_reports",
    schedule="30 6 * * *",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("aws", "athena"),
):
    for family, reports in REPORTS.items():
        with TaskGroup(group_id=family):
            for report in reports:
                AthenaOperator(
                    task_id=report,
                    query=f"SELECT * FROM {family}.{report} WHERE dt = '{{{{ ds }}}}'",
                    database=family,
                    output_location=OUTPUT,
                )
