"""``airflow zygote ...`` declared as data; every implementation is imported lazily when run."""

from __future__ import annotations

from airflow.cli.cli_config import (
    ARG_BUNDLE_NAME,
    ARG_DAEMON,
    ARG_LOG_FILE,
    ARG_NUM_RUNS,
    ARG_PID,
    ARG_STDERR,
    ARG_STDOUT,
    ARG_VERBOSE,
    ActionCommand,
    Arg,
    CLICommand,
    GroupCommand,
    lazy_load_command,
)

ARG_JSON = Arg(("--json",), help="Print machine-readable JSON", action="store_true")
ARG_BENCH_DAGS = Arg(("--dags",), help="Folder of DAG files to parse (default: a generated corpus)")
ARG_BENCH_ROUNDS = Arg(("--rounds",), type=int, default=3, help="Rounds per side (the first is cold)")
ARG_BENCH_PARALLELISM = Arg(
    ("--parallelism",), type=int, nargs="+", default=[2, 8], help="parsing_processes values to measure"
)
ARG_BENCH_OUTPUT = Arg(("--output",), help="Write every raw figure and the ratios to this JSON file")
ARG_BENCH_APPROVED = Arg(
    ("--approved-modules",), default=None, help="approved_modules for the zygote side (default: [zygote])"
)
ARG_BENCH_CHART = Arg(("--chart",), help="Also write a PNG chart here (needs matplotlib)")

ZYGOTE_COMMANDS: tuple[ActionCommand, ...] = (
    ActionCommand(
        name="serve",
        help="Run the zygote: a ZeroMQ gateway plus a frozen forker that forks one worker per parse",
        func=lazy_load_command("zygote.cli.commands.serve"),
        args=(ARG_VERBOSE,),
    ),
    ActionCommand(
        name="dag-processor",
        help="Run Airflow's dag-processor with parse children forked by the zygote",
        func=lazy_load_command("zygote.cli.commands.dag_processor"),
        args=(
            ARG_PID,
            ARG_DAEMON,
            ARG_BUNDLE_NAME,
            ARG_NUM_RUNS,
            ARG_STDOUT,
            ARG_STDERR,
            ARG_LOG_FILE,
            ARG_VERBOSE,
        ),
    ),
    ActionCommand(
        name="status",
        help="Ask a running zygote for its state; exit code 0 when healthy",
        func=lazy_load_command("zygote.cli.commands.status"),
        args=(ARG_JSON,),
    ),
    ActionCommand(
        name="reload",
        help="Start a new forker generation (config re-read, preloads redone) without dropping requests",
        func=lazy_load_command("zygote.cli.commands.reload"),
        args=(),
    ),
    ActionCommand(
        name="bench",
        help="Stock vs zygote parsing, side by side, on the same DAG files",
        func=lazy_load_command("zygote.bench.cli.bench"),
        args=(
            ARG_BENCH_DAGS,
            ARG_BENCH_ROUNDS,
            ARG_BENCH_PARALLELISM,
            ARG_BENCH_OUTPUT,
            ARG_BENCH_APPROVED,
            ARG_BENCH_CHART,
        ),
    ),
)


def get_zygote_cli_commands() -> list[CLICommand]:
    """Return the ``zygote`` command group for Airflow's CLI parser."""
    return [
        GroupCommand(
            name="zygote",
            help="Prefork parsing server for the DAG processor",
            subcommands=ZYGOTE_COMMANDS,
        )
    ]
