"""What the gateway tells a client beyond relaying: encodable replies and notes on zygote-side kills.

A reply the codec refuses would be lost after its request was marked replied, so error texts that
quote client input are clipped to the ``str`` limit, and a terminal reply that still cannot be
encoded becomes an ``internal`` error for its id. A worker the zygote killed (memory limit,
deadline, CPU time) looks like any SIGKILL to Airflow; a note on its stderr says why.
"""

from __future__ import annotations

import signal
from dataclasses import replace

from protocol import Error, ErrorCode, Exited, LocalProtocolError, Message, encode
from protocol.limits import MAX_STR
from zygote.config import Settings
from zygote.logs import get_logger

log = get_logger(__name__)

CPU_SLACK_S = 0.1
"""CPU seconds under the limit that still count as having reached it (rusage granularity)."""


def encode_reply(message: Message) -> bytes | None:
    """The bytes to send, or None when there is nothing sendable (logged)."""
    if isinstance(message, Error):
        message = replace(message, message=clip(message.message))
    try:
        return encode(message)
    except LocalProtocolError as exc:
        log.error("client.reply_unencodable", type=message.TYPE, error=str(exc)[:500])
    request_id = getattr(message, "id", "")
    if isinstance(message, Exited | Error) and request_id:
        return encode(
            Error(id=request_id, code=ErrorCode.INTERNAL.value, message="the zygote could not encode its reply")
        )
    return None


def clip(text: str) -> str:
    raw = text.encode()
    if len(raw) <= MAX_STR:
        return text
    return raw[: MAX_STR - 16].decode(errors="ignore") + " [truncated]"


def kill_note(exited: Exited, settings: Settings) -> str:
    """A line for the per-file log when the zygote's own limits ended the worker, else ""."""
    if exited.outcome == "memory_limit":
        return f"[airflow-zygote] killed: memory limit {settings.worker_memory_limit} MiB\n"
    if exited.outcome == "deadline":
        return f"[airflow-zygote] killed: zygote deadline reached after {exited.stats.get('wall_s', 0.0):.1f} s\n"
    if cpu_limited(exited, settings.worker_cpu_limit):
        return f"[airflow-zygote] killed: CPU time limit {settings.worker_cpu_limit} s\n"
    return ""


def cpu_limited(exited: Exited, limit: int) -> bool:
    """RLIMIT_CPU ends a worker with SIGXCPU, or with SIGKILL when its hard limit equals the soft one."""
    if not limit or exited.outcome != "signaled" or exited.exit_code not in (-signal.SIGXCPU, -signal.SIGKILL):
        return False
    used = float(exited.stats.get("cpu_user_s", 0.0)) + float(exited.stats.get("cpu_system_s", 0.0))
    return used >= limit - CPU_SLACK_S
