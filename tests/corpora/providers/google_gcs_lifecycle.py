"""GCS bucket lifecycle in the style of the Google provider's example_gcs DAG."""

from __future__ import annotations

from airflow.providers.google.cloud.operators.gcs import (
    GCSCreateBucketOperator,
    GCSDeleteBucketOperator,
    GCSListObjectsOperator,
)
from airflow.providers.google.cloud.sensors.gcs import GCSObjectExistenceSensor
from airflow.sdk import DAG, chain
from corp_helpers import gcp
from corp_helpers.defaults import DEFAULT_ARGS, START, env_id, tags

ENV_ID = env_id()
CLIENT = gcp.storage_client()
BUCKET = f"corpus-{ENV_ID}"
BLOB = CLIENT.bucket(BUCKET).blob("landing/data.json").name

with DAG(
    "google_gcs_lifecycle",
    schedule="@daily",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("gcp", "gcs"),
):
    chain(
        GCSCreateBucketOperator(
            task_id="create_bucket", bucket_name=BUCKET, project_id=gcp.PROJECT_ID, location=gcp.LOCATION
        ),
        GCSObjectExistenceSensor(task_id="wait_blob", bucket=BUCKET, object=BLOB, mode="reschedule"),
        GCSListObjectsOperator(task_id="list", bucket=BUCKET, prefix="landing/"),
        GCSDeleteBucketOperator(task_id="delete_bucket", bucket_name=BUCKET, trigger_rule="all_done"),
    )
