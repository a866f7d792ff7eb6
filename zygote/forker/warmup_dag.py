"""Parsed once per forker generation (in a throwaway child) so Airflow's lazy imports get preloaded,
then serialized in the forker itself so the caches a first parse fills are shared (warm_caches.py).

It touches what typical DAG files touch: the DAG and task decorators, classic operators and a
sensor, params, default arguments and callbacks, cron, interval and asset schedules, assets and
asset aliases, task groups, setup and teardown, branching, edge labels and dynamic task mapping.
It uses core classes only: nothing a plugin registers, no ``executor_config``.
"""

from __future__ import annotations

import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator, ShortCircuitOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import DAG, Asset, AssetAlias, Label, Param, TaskGroup, chain, dag, setup, task, teardown

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


def _noop(*args: object, **kwargs: object) -> None:
    return None


with DAG(
    dag_id="airflow_zygote_warmup_more",
    schedule=datetime.timedelta(hours=6),
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(minutes=5), "owner": "airflow-zygote"},
    dagrun_timeout=datetime.timedelta(hours=1),
    on_failure_callback=_noop,
    doc_md="Shipped with airflow-zygote; never parsed as a user's DAG.",
) as more:

    @setup
    def create() -> None:
        return None

    @teardown
    def delete() -> None:
        return None

    @task.branch
    def choose() -> str:
        return "wait"

    wait = TimeDeltaSensor(task_id="wait", delta=datetime.timedelta(seconds=1), mode="reschedule")
    short = ShortCircuitOperator(task_id="short", python_callable=_noop)
    branch = BranchPythonOperator(task_id="branch", python_callable=_noop)
    trigger = TriggerDagRunOperator(
        task_id="trigger", trigger_dag_id="airflow_zygote_warmup", outlets=[AssetAlias("airflow-zygote-alias")]
    )
    chain(create(), choose(), Label("then"), [wait, short], branch, trigger, delete())
