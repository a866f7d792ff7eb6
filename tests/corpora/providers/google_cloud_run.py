"""Cloud Run job executions per region, grouped in TaskGroups."""

from __future__ import annotations

from airflow.providers.google.cloud.operators.cloud_run import CloudRunExecuteJobOperator
from airflow.sdk import DAG
from airflow.sdk.definitions.taskgroup import TaskGroup
from corp_helpers import gcp
from corp_helpers.defaults import DEFAULT_ARGS, START, tags

REGIONS = ["europe-west1", "europe-west4", "us-central1"]

with DAG(
    "google_cloud_run",
    schedule="0 */6 * * *",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("gcp", "cloud_run"),
):
    for region in REGIONS:
        with TaskGroup(group_id=region.replace("-", "_")):
            CloudRunExecuteJobOperator(
                task_id="execute",
                project_id=gcp.PROJECT_ID,
                region=region,
                job_name="corpus-export",
                overrides={"container_overrides": [{"args": ["--region", region]}]},
            )
