"""A provider operator rejecting a malformed value in its own constructor."""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG
from corp_helpers import k8s
from corp_helpers.defaults import START

with DAG("errors_provider_validation", schedule=None, start_date=START):
    KubernetesPodOperator(
        task_id="pod", namespace=k8s.NAMESPACE, image="busybox", name="keeps-pod", on_finish_action="keep"
    )
