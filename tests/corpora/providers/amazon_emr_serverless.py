"""EMR Serverless application and Spark job, like example_emr_serverless."""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.emr import (
    EmrServerlessCreateApplicationOperator,
    EmrServerlessStartJobOperator,
)
from airflow.sdk import DAG
from corp_helpers import aws
from corp_helpers.defaults import DEFAULT_ARGS, START, env_id, tags

ENV_ID = env_id()
EMR = aws.client("emr-serverless")
LOGS = f"s3://{aws.bucket_name(ENV_ID, 'emr-logs')}/"
SPARK = {
    "sparkSubmit": {
        "entryPoint": "s3://corpus-code/jobs/aggregate.py",
        "sparkSubmitParameters": "--conf spark.executor.cores=2",
    }
}

with DAG(
    "amazon_emr_serverless",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("aws", "emr"),
):
    app = EmrServerlessCreateApplicationOperator(
        task_id="create_application",
        release_label="emr-7.0.0",
        job_type="SPARK",
        config={"name": f"{ENV_ID}-app"},
        region_name=EMR.meta.region_name,
    )
    EmrServerlessStartJobOperator(
        task_id="start_job",
        application_id=app.output,
        execution_role_arn="arn:aws:iam::000000000000:role/emr",
        job_driver=SPARK,
        configuration_overrides={"monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": LOGS}}},
    )
