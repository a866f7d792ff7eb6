"""Binding and connecting the ZeroMQ endpoint (``[zygote] socket``), with its security rules.

``ipc://``: the socket lives in a directory this side creates owner-only (or group-readable with
``socket_group``). ``tcp://``: refused unless CURVE keys are configured; the server accepts only
allow-listed client keys and the client pins the server key.
"""

from __future__ import annotations

import grp
import os
import socket
import stat
from pathlib import Path
from typing import Any

import zmq

from protocol import MAX_FRAME
from zygote.config import Settings


class EndpointError(Exception):
    """The endpoint cannot be used as configured; the message says what to change."""


def ipc_path(endpoint: str) -> Path | None:
    return Path(endpoint[len("ipc://") :]) if endpoint.startswith("ipc://") else None


def bind_router(context: zmq.Context[Any], settings: Settings) -> zmq.Socket[Any]:
    """The gateway's ROUTER socket, bound and locked down."""
    router: zmq.Socket[Any] = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.setsockopt(zmq.LINGER, 1000)
    router.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME + 1024)
    router.setsockopt(zmq.SNDHWM, 0)  # output is bounded by per-request credit instead
    path = ipc_path(settings.socket)
    if path is not None:
        _prepare_ipc(path, settings.socket_group)
        router.bind(settings.socket)
        os.chmod(path, 0o660 if settings.socket_group else 0o600)
    elif settings.socket.startswith("tcp://"):
        _serve_curve(context, router, settings)
        router.bind(settings.socket)
    else:
        raise EndpointError(f"[zygote] socket must be ipc:// or tcp://, not {settings.socket!r}")
    return router


def connect_dealer(context: zmq.Context[Any], settings: Settings, identity: bytes) -> zmq.Socket[Any]:
    """A client DEALER connected to the zygote."""
    dealer: zmq.Socket[Any] = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.ROUTING_ID, identity)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME + 1024)
    dealer.setsockopt(zmq.SNDHWM, 0)
    dealer.setsockopt(zmq.RCVHWM, 0)
    if settings.socket.startswith("tcp://"):
        _client_curve(dealer, settings)
    elif ipc_path(settings.socket) is None:
        raise EndpointError(f"[zygote] socket must be ipc:// or tcp://, not {settings.socket!r}")
    dealer.connect(settings.socket)
    return dealer


def _prepare_ipc(path: Path, group: str) -> None:
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o750 if group else 0o700)
    if group:
        os.chown(directory, -1, grp.getgrnam(group).gr_gid)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise EndpointError(f"{path} exists and is not a socket; refusing to replace it")
        if _someone_listens(path):
            raise EndpointError(f"another zygote is already serving on {path}")
        path.unlink()


def _someone_listens(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _serve_curve(context: zmq.Context[Any], router: zmq.Socket[Any], settings: Settings) -> None:
    if not (settings.curve_server_secret_key and settings.curve_server_public_key and settings.curve_allowed_clients):
        raise EndpointError(
            "tcp:// needs [zygote] curve_server_public_key, curve_server_secret_key and "
            "curve_allowed_clients; refusing to serve parse requests unauthenticated over TCP"
        )
    from zmq.auth.thread import ThreadAuthenticator

    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    allowed = {key.encode() for key in settings.curve_allowed_clients}
    authenticator.configure_curve_callback("*", credentials_provider=_AllowList(allowed))
    router.curve_secretkey = settings.curve_server_secret_key.encode()
    router.curve_publickey = settings.curve_server_public_key.encode()
    router.curve_server = True


class _AllowList:
    """ZAP credentials provider: only allow-listed Z85 client keys."""

    def __init__(self, allowed: set[bytes]) -> None:
        self.allowed = allowed

    def callback(self, domain: str, key: bytes) -> bool:
        return zmq.utils.z85.encode(key) in self.allowed


def _client_curve(dealer: zmq.Socket[Any], settings: Settings) -> None:
    if not (settings.curve_server_public_key and settings.curve_client_public_key and settings.curve_client_secret_key):
        raise EndpointError(
            "tcp:// needs [zygote] curve_server_public_key, curve_client_public_key and curve_client_secret_key"
        )
    dealer.curve_serverkey = settings.curve_server_public_key.encode()
    dealer.curve_publickey = settings.curve_client_public_key.encode()
    dealer.curve_secretkey = settings.curve_client_secret_key.encode()
