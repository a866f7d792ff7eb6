"""google-cloud objects built at parse time; anonymous credentials so nothing is looked up."""

from __future__ import annotations

from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage

PROJECT_ID = "corpus-project"
LOCATION = "europe-west1"


def storage_client() -> storage.Client:
    return storage.Client(project=PROJECT_ID, credentials=AnonymousCredentials())


def bigquery_client() -> bigquery.Client:
    return bigquery.Client(project=PROJECT_ID, credentials=AnonymousCredentials(), location=LOCATION)


def schema(*columns: tuple[str, str]) -> list[dict[str, str]]:
    """BigQuery schema fields as the operators want them (built through the SDK's SchemaField)."""
    return [bigquery.SchemaField(name, kind, mode="NULLABLE").to_api_repr() for name, kind in columns]
