"""Parsed once per forker generation (in a throwaway child) so Airflow's lazy imports get preloaded.

It touches what typical DAG files touch: the DAG and task decorators, classic operators, params,
timetables, assets, task groups and dynamic task mapping.
"""

from __future__ import annotations

import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset, Param, TaskGroup, dag, task

with DAG(
    dag_id="airflow_zygote_warmup",
    schedule="@daily",
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    params={"n": Param(1, type="integer")},
    tags=["airflow-zygote"],
) as classic:
    start = EmptyOperator(task_id="start")
    with TaskGroup("group"):
        shell = BashOperator(task_id="shell", bash_command="echo {{ ds }}", outlets=[Asset("zygote://warmup")])
        python = PythonOperator(task_id="python", python_callable=print)
    start >> shell >> python


@dag(schedule=[Asset("zygote://warmup")], start_date=datetime.datetime(2024, 1, 1), catchup=False)
def airflow_zygote_warmup_taskflow() -> None:
    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task
    def double(value: int) -> int:
        return value * 2

    double.expand(value=numbers())


airflow_zygote_warmup_taskflow()
