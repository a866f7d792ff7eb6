"""BigQuery datasets, tables and queries, like example_bigquery_queries; the SDK's client built at parse time."""

from __future__ import annotations

from airflow.providers.google.cloud.operators.bigquery import (
    BigQueryCheckOperator,
    BigQueryCreateEmptyDatasetOperator,
    BigQueryCreateTableOperator,
    BigQueryDeleteDatasetOperator,
    BigQueryInsertJobOperator,
)
from airflow.sdk import DAG
from corp_helpers import gcp
from corp_helpers.defaults import DEFAULT_ARGS, START, env_id, tags

ENV_ID = env_id().replace("-", "_")
CLIENT = gcp.bigquery_client()
DATASET = f"corpus_{ENV_ID}"
TABLE_REF = CLIENT.dataset(DATASET).table("events")
SCHEMA = gcp.schema(("event_id", "STRING"), ("ts", "TIMESTAMP"), ("amount", "FLOAT"), ("country", "STRING"))

with DAG(
    "google_bigquery_queries",
    schedule="@daily",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=tags("gcp", "bigquery"),
):
    dataset = BigQueryCreateEmptyDatasetOperator(task_id="create_dataset", dataset_id=DATASET, location=gcp.LOCATION)
    table = BigQueryCreateTableOperator(
        task_id="create_table",
        dataset_id=DATASET,
        table_id=TABLE_REF.table_id,
        table_resource={"schema": {"fields": SCHEMA}, "timePartitioning": {"type": "DAY", "field": "ts"}},
    )
    insert = BigQueryInsertJobOperator(
        task_id="insert_rows",
        configuration={
            "query": {
                "query": f"INSERT {DATASET}.events VALUES ('a', CURRENT_TIMESTAMP(), 1.0, 'DE')",
                "useLegacySql": False,
            }
        },
        location=gcp.LOCATION,
    )
    check = BigQueryCheckOperator(
        task_id="check_count", sql=f"SELECT COUNT(*) FROM {DATASET}.events", use_legacy_sql=False, location=gcp.LOCATION
    )
    delete = BigQueryDeleteDatasetOperator(
        task_id="delete_dataset", dataset_id=DATASET, delete_contents=True, trigger_rule="all_done"
    )
    dataset >> table >> insert >> check >> delete
