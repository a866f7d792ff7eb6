"""TaskFlow with google-cloud-storage blobs described at parse time."""

from __future__ import annotations

from airflow.sdk import dag, task
from corp_helpers import gcp
from corp_helpers.defaults import START, tags

CLIENT = gcp.storage_client()
BLOBS = [CLIENT.bucket("corpus-exports").blob(f"daily/{n:02d}.csv").name for n in range(6)]


@dag(schedule="@daily", start_date=START, catchup=False, tags=tags("gcp", "taskflow"))
def google_taskflow_storage():
    @task
    def size(blob: str) -> int:
        return len(blob)

    @task
    def report(sizes: list[int]) -> None:
        print(sum(sizes))

    report(size.expand(blob=BLOBS))


google_taskflow_storage()
