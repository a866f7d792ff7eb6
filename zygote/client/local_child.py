"""A stock parse child started on channels the process object already registered.

When the zygote refuses a request after ``_create_process`` returned (``not_ready``,
``overloaded``, no answer in time, session lost) and ``[zygote] fallback = local``, the file is
parsed here instead, never lost. The manager already holds the ``parent`` ends in its selector and
has written the ``DagFileParseRequest`` into ``requests``; a child forked with the ``child`` ends
does what ``WatchedSubprocess.start`` does after its own ``fork()``: it closes the parent ends and
runs Airflow's ``_fork_main`` with ``_parse_file_entrypoint``, so the parse is exactly stock.
The relay thread forks, as the manager thread would; the child only runs Airflow's child code and
ends with ``os._exit``.
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
from collections.abc import Iterable
from contextlib import suppress

from airflow.dag_processing.processor import _parse_file_entrypoint
from airflow.sdk.execution_time.supervisor import _fork_main

from zygote.client.channels import LocalChannels


def start_local_child(channels: LocalChannels, others: Iterable[socket.socket] = ()) -> int:
    """Fork a stock parse child on ``channels.child``; the parent keeps none of those ends.

    ``others``: the relay's ends of other requests. The child closes them, or their manager-side
    ends would not see EOF until this child exits.
    """
    unused = [*channels.parent.values(), *others]
    pid = os.fork()
    if pid == 0:
        _run_child(channels, unused)
    channels.close_children()
    return pid


def _run_child(channels: LocalChannels, unused: list[socket.socket]) -> None:
    try:
        for sock in unused:
            with suppress(OSError):
                sock.close()
        child = channels.child
        for sock in child.values():
            sock.setblocking(True)
        _fork_main(child["requests"], child["stdout"], child["stderr"], child["logs"].fileno(), _parse_file_entrypoint)
    except BaseException as exc:
        with suppress(BaseException):
            print("Exception in child process, exiting with code 124", file=sys.stderr)
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    os._exit(124)
