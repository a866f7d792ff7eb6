"""The protocol's error vocabulary.

Two kinds, as in h11: :class:`ProtocolError` subclasses mean *the peer sent garbage* (answer with an
:class:`~protocol.messages.Error` carrying :attr:`ProtocolError.code`, keep serving);
:class:`LocalProtocolError` means *we* tried to send something invalid (a bug on this side).
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """Every ``code`` an ``error`` message may carry (SPEC.md, "Error codes")."""

    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    UNKNOWN_TYPE = "unknown_type"
    VERSION_MISMATCH = "version_mismatch"
    CONFIG_MISMATCH = "config_mismatch"
    HELLO_REQUIRED = "hello_required"
    UNAUTHORIZED = "unauthorized"
    DUPLICATE_ID = "duplicate_id"
    UNKNOWN_ID = "unknown_id"
    OVERLOADED = "overloaded"
    REJECTED_PATH = "rejected_path"
    FORK_REFUSED = "fork_refused"
    FORK_FAILED = "fork_failed"
    NOT_READY = "not_ready"
    FORKER_LOST = "forker_lost"
    SHUTTING_DOWN = "shutting_down"
    CLIENT_GONE = "client_gone"
    INTERNAL = "internal"


class Outcome(str, Enum):
    """How a worker ended: the ``outcome`` of an ``exited`` message (SPEC.md, "exited")."""

    EXITED = "exited"
    FAILED = "failed"
    SIGNALED = "signaled"
    KILLED = "killed"
    DEADLINE = "deadline"
    MEMORY_LIMIT = "memory_limit"
    CLIENT_GONE = "client_gone"
    DRAIN_TIMEOUT = "drain_timeout"


def outcome_of(exit_code: int, kill_reason: Outcome | None = None) -> Outcome:
    """Name how a worker ended (SPEC.md, ``exited``): ``kill_reason`` is why the zygote killed it, if it did."""
    if exit_code < 0:
        return kill_reason or Outcome.SIGNALED
    return Outcome.EXITED if exit_code == 0 else Outcome.FAILED


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid message. ``code`` goes into the error reply."""

    code: ErrorCode = ErrorCode.MALFORMED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedMessage(ProtocolError):
    """Not msgpack, not a map, a missing/extra/mistyped field, an ext type, a non-string key."""

    code = ErrorCode.MALFORMED


class TruncatedMessage(ProtocolError):
    """The bytes end before the message does."""

    code = ErrorCode.TRUNCATED


class OversizedMessage(ProtocolError):
    """A frame, string, binary, array or map larger than the limits in :mod:`protocol.limits`."""

    code = ErrorCode.OVERSIZED


class UnknownMessageType(ProtocolError):
    """A well-formed frame whose ``t`` names no message of this protocol version."""

    code = ErrorCode.UNKNOWN_TYPE


class VersionMismatch(ProtocolError):
    """A frame whose ``v`` is not :data:`protocol.limits.PROTOCOL_VERSION`."""

    code = ErrorCode.VERSION_MISMATCH


class LocalProtocolError(Exception):
    """This side tried to encode an invalid message: a bug here, not the peer's fault."""
