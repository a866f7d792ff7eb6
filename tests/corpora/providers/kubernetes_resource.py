"""Creates a ConfigMap with KubernetesCreateResourceOperator; the YAML comes from a kubernetes model."""

from __future__ import annotations

import yaml
from airflow.providers.cncf.kubernetes.operators.resource import KubernetesCreateResourceOperator
from airflow.sdk import DAG
from corp_helpers import k8s
from corp_helpers.defaults import DEFAULT_ARGS, START, tags
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s_models

CONFIG_MAP = k8s_models.V1ConfigMap(
    api_version="v1",
    kind="ConfigMap",
    metadata=k8s_models.V1ObjectMeta(name="corpus-settings"),
    data={"mode": "batch", "region": "eu"},
)
YAML = yaml.safe_dump(ApiClient().sanitize_for_serialization(CONFIG_MAP))

with DAG(
    "kubernetes_resource", schedule=None, start_date=START, catchup=False, default_args=DEFAULT_ARGS, tags=tags("k8s")
):
    KubernetesCreateResourceOperator(task_id="create_config_map", namespace=k8s.NAMESPACE, yaml_conf=YAML)
