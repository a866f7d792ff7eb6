"""Entry point of the lean gateway process (``exec``'d by ``airflow zygote serve``)."""

from __future__ import annotations

import argparse
import sys

GATEWAY_CODE = "from zygote.gateway.main import main; main()"
"""Run by :func:`zygote.gateway.boot.python_argv`: the installed zygote, never one from cwd or ``PYTHONPATH``."""

NEVER_IMPORTED = ("rich",)
"""Optional imports of the gateway's libraries that it never uses: ``structlog.dev`` imports ``rich``
(~100 modules, 4 MiB of heap) for pretty tracebacks, but the zygote's logging renders tracebacks
itself (``format_exc_info``), so the gateway's output is the same without it."""


def skip_unused_imports() -> None:
    """Make ``import rich`` fail in this process (``None`` in ``sys.modules``): libraries that try it
    fall back, as they do where it is not installed. Only the gateway: the forker must import what a
    stock parse child would."""
    for name in NEVER_IMPORTED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="zygote-gateway")
    parser.add_argument("--boot-fd", type=int, required=True)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    skip_unused_imports()
    from zygote import linux
    from zygote.gateway.boot import read_boot
    from zygote.gateway.loop import Gateway
    from zygote.logs import configure_logging
    from zygote.transport import EndpointError

    linux.make_undumpable()  # before the boot record (with the CURVE secret) is read
    boot = read_boot(args.boot_fd)
    configure_logging("gateway", verbose=args.verbose)
    try:
        gateway = Gateway(boot, verbose=args.verbose)
    except EndpointError as exc:
        print(f"airflow zygote serve: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(gateway.run())
