"""Glue job plus sensor, like example_glue, with the job script location built from a boto3 session."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.glue import GlueJobOperator
from airflow.providers.amazon.aws.sensors.glue import GlueJobSensor
from airflow.sdk import DAG
from airflow.sdk.definitions.taskgroup import TaskGroup
from corp_helpers import aws
from corp_helpers.defaults import DEFAULT_ARGS, START, env_id, tags

ENV_ID = env_id()
SESSION = aws.session()
SCRIPTS = f"s3://{aws.bucket_name(ENV_ID, 'scripts')}/glue"
REGIONS = sorted(SESSION.get_available_regions("glue"))[:3]

with DAG(
    "amazon_glue_etl",
    schedule="0 3 * * *",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("aws", "glue"),
):
    for region in REGIONS:
        with TaskGroup(group_id=f"etl_{region.replace('-', '_')}"):
            job = GlueJobOperator(
                task_id="run_job",
                job_name=f"{ENV_ID}-{region}",
                script_location=f"{SCRIPTS}/transform.py",
                s3_bucket=aws.bucket_name(ENV_ID, "glue-logs"),
                iam_role_name="corpus-glue-role",
                region_name=region,
                create_job_kwargs={"GlueVersion": "4.0", "NumberOfWorkers": 2, "WorkerType": "G.1X"},
                wait_for_completion=False,
            )
            GlueJobSensor(task_id="wait_job", job_name=f"{ENV_ID}-{region}", run_id=job.output, region_name=region)
