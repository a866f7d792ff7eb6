"""One-shot control sessions (``status``, ``reload``) against a running zygote."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import zmq

from protocol import (
    Ack,
    Error,
    Hello,
    Message,
    ProtocolError,
    Reload,
    StatusReply,
    StatusRequest,
    Welcome,
    decode,
    encode,
)
from zygote.config import Settings
from zygote.handshake import control_hello
from zygote.transport import connect_dealer


class ControlError(Exception):
    """The zygote could not be reached or refused the request."""


HelloFactory = Callable[[str], Hello]


def query_status(settings: Settings, timeout_s: float = 10.0, hello: HelloFactory = control_hello) -> dict[str, Any]:
    """The running zygote's status report; ``hello`` lets the lean health check skip importing Airflow."""
    reply = _request(settings, StatusRequest(id="status"), timeout_s, hello)
    if not isinstance(reply, StatusReply):
        raise ControlError(f"unexpected answer {reply.TYPE}")
    return reply.status


def request_reload(settings: Settings, timeout_s: float = 300.0) -> str:
    reply = _request(settings, Reload(id="reload"), timeout_s, control_hello)
    if not isinstance(reply, Ack):
        raise ControlError(f"unexpected answer {reply.TYPE}")
    return reply.detail


def _request(settings: Settings, message: StatusRequest | Reload, timeout_s: float, hello: HelloFactory) -> Message:
    context: zmq.Context[Any] = zmq.Context()
    identity = f"control-{os.getpid()}-{uuid.uuid4().hex[:8]}".encode()
    dealer = connect_dealer(context, settings, identity)
    deadline = time.monotonic() + timeout_s
    try:
        dealer.send(encode(hello(identity.decode())))
        _expect(dealer, Welcome, deadline, settings)
        dealer.send(encode(message))
        return _expect(dealer, (StatusReply, Ack), deadline, settings)
    finally:
        dealer.close(linger=0)
        context.term()


def _expect(dealer: zmq.Socket[Any], wanted: Any, deadline: float, settings: Settings) -> Message:
    while (remaining := deadline - time.monotonic()) > 0:
        if not dealer.poll(int(remaining * 1000)):
            break
        try:
            reply = decode(dealer.recv())
        except ProtocolError as exc:
            raise ControlError(f"bad answer from the zygote: {exc}") from exc
        if isinstance(reply, Error):
            raise ControlError(f"{reply.code}: {reply.message}")
        if isinstance(reply, wanted):
            answer: Message = reply
            return answer
    raise ControlError(f"no answer from the zygote at {settings.socket}")
