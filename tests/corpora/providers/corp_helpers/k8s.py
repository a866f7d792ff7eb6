"""kubernetes client models built at parse time, as KubernetesPodOperator DAGs do."""

from __future__ import annotations

from kubernetes.client import models as k8s

NAMESPACE = "airflow-jobs"

RESOURCES = k8s.V1ResourceRequirements(
    requests={"cpu": "250m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "1Gi"}
)
SCRATCH = k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="1Gi"))
SCRATCH_MOUNT = k8s.V1VolumeMount(name="scratch", mount_path="/scratch")
AFFINITY = k8s.V1Affinity(
    node_affinity=k8s.V1NodeAffinity(
        required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(
            node_selector_terms=[
                k8s.V1NodeSelectorTerm(
                    match_expressions=[
                        k8s.V1NodeSelectorRequirement(key="pool", operator="In", values=["batch", "spot"])
                    ]
                )
            ]
        )
    )
)
TOLERATIONS = [k8s.V1Toleration(key="dedicated", operator="Equal", value="batch", effect="NoSchedule")]


def env(**values: str) -> list[k8s.V1EnvVar]:
    return [k8s.V1EnvVar(name=name, value=value) for name, value in sorted(values.items())]
