"""The @task.kubernetes decorator next to plain TaskFlow tasks."""

from __future__ import annotations

from airflow.sdk import dag, task
from corp_helpers import k8s
from corp_helpers.defaults import START, tags


@dag(schedule=None, start_date=START, catchup=False, tags=tags("k8s", "decorator"))
def kubernetes_decorator():
    @task
    def batches() -> list[int]:
        return [1, 2, 3]

    @task.kubernetes(image="python:3.12-slim", namespace=k8s.NAMESPACE, name="square", on_finish_action="delete_pod")
    def square(n: int) -> int:
        return n * n

    square.expand(n=batches())


kubernetes_decorator()
