"""Replies the gateway can always send: clipped error texts, and ``internal`` when encoding fails.

A reply the codec refuses would be lost after its request was marked replied, so error texts that
quote client input are clipped to the ``str`` limit, and a terminal reply that still cannot be
encoded becomes an ``internal`` error for its id. (Why the zygote killed a worker is worded by the
forker, which enforced the limit, and travels in ``exited.note``.)
"""

from __future__ import annotations

from dataclasses import replace

from protocol import Error, ErrorCode, Exited, LocalProtocolError, Message, encode
from protocol.limits import MAX_STR
from zygote.logs import get_logger

log = get_logger(__name__)


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
