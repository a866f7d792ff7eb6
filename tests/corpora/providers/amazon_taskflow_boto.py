"""TaskFlow DAG using boto3 clients inside tasks and a paginator model built at parse time."""

from __future__ import annotations

from airflow.sdk import dag, task
from corp_helpers import aws
from corp_helpers.defaults import START, tags

S3 = aws.client("s3")
PAGE_SIZE = S3.get_paginator("list_objects_v2").PAGE_ITERATOR_CLS.__name__


@dag(schedule=None, start_date=START, catchup=False, tags=tags("aws", "taskflow"))
def amazon_taskflow_boto():
    @task
    def list_prefixes() -> list[str]:
        return [f"exports/{i}/" for i in range(3)]

    @task
    def count(prefix: str) -> int:
        return len(prefix)

    @task
    def total(counts: list[int]) -> int:
        return sum(counts)

    total(count.expand(prefix=list_prefixes()))


amazon_taskflow_boto()
