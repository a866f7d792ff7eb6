"""ECS and Batch jobs side by side, container overrides built at parse time."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.batch import BatchOperator
from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator
from airflow.sdk import DAG
from corp_helpers import aws
from corp_helpers.defaults import DEFAULT_ARGS, START, env_id, tags

ENV_ID = env_id()
ECS = aws.client("ecs")
OVERRIDES = {
    "containerOverrides": [
        {"name": "app", "command": ["python", "-m", "jobs.nightly"], "environment": [{"name": "ENV", "value": ENV_ID}]}
    ]
}

with DAG(
    "amazon_ecs_batch",
    schedule="@hourly",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("aws", "ecs", "batch"),
):
    ecs = EcsRunTaskOperator(
        task_id="run_ecs_task",
        cluster="corpus-cluster",
        task_definition="corpus-nightly:3",
        launch_type="FARGATE",
        overrides=OVERRIDES,
        network_configuration={"awsvpcConfiguration": {"subnets": ["subnet-0abc"], "assignPublicIp": "DISABLED"}},
        region_name=ECS.meta.region_name,
    )
    batch = BatchOperator(
        task_id="submit_batch_job",
        job_name=f"{ENV_ID}-batch",
        job_queue="corpus-queue",
        job_definition="corpus-job-def",
        container_overrides={"command": ["echo", "hello"]},
    )
    ecs >> batch
