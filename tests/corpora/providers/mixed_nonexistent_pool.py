"""Parses fine but names a pool that does not exist: the dag-processor records a DAG warning for it."""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG
from corp_helpers import k8s
from corp_helpers.defaults import START, tags

with DAG("mixed_nonexistent_pool", schedule=None, start_date=START, tags=tags("k8s")):
    KubernetesPodOperator(
        task_id="pod", namespace=k8s.NAMESPACE, image="busybox", name="pooled", pool="corpus_batch_pool"
    )
