"""``airflow zygote dag-processor``: Airflow's own dag-processor command with our manager."""

from __future__ import annotations

from argparse import Namespace

from airflow.cli.commands.daemon_utils import run_command_with_daemon_option
from airflow.cli.commands.dag_processor_command import _run_dag_processor_job
from airflow.jobs.dag_processor_job_runner import DagProcessorJobRunner
from airflow.jobs.job import Job
from airflow.utils import cli as cli_utils
from airflow.utils.process_utils import set_component_mp_start_method
from airflow.utils.providers_configuration_loader import providers_configuration_loaded

from zygote.client.manager import ZygoteDagFileProcessorManager


@cli_utils.action_cli  # type: ignore[untyped-decorator]
@providers_configuration_loaded
def run_dag_processor(args: Namespace) -> None:
    """Same flags and behaviour as ``airflow dag-processor``; parse children come from the zygote."""
    set_component_mp_start_method("dag_processor")
    if args.bundle_name:
        cli_utils.validate_dag_bundle_arg(args.bundle_name)
    manager = ZygoteDagFileProcessorManager(max_runs=args.num_runs, bundle_names_to_parse=args.bundle_name)
    job_runner = DagProcessorJobRunner(job=Job(), processor=manager)
    run_command_with_daemon_option(
        args=args,
        process_name="dag-processor",
        callback=lambda: _run_dag_processor_job(job_runner),
        should_setup_logging=True,
    )
