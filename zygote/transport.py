"""Binding and connecting the ZeroMQ endpoint (``[zygote] socket``), with its security rules.

``ipc://``: the socket lives in a directory this side creates owner-only (or group-readable with
``socket_group``), and a ZAP handler checks each connecting peer's uid (libzmq hands ZAP the
kernel's ``SO_PEERCRED`` as ``<host>:<uid>:<gid>:<pid>`` in the address): the gateway's own uid, or
a member of ``socket_group``. A peer whose credentials are missing is refused (fail closed).
``tcp://``: refused unless CURVE keys are configured; the server accepts only allow-listed client
keys and the client pins the server key. The ZAP handler is a thread of the gateway: the forker and
the workers never see it or the keys.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from protocol import MAX_FRAME
from zygote.config import Settings
from zygote.logs import get_logger

log = get_logger(__name__)

IPC_ZAP_DOMAIN = b"zygote"
ROUTER_SNDHWM = 10_000
"""Messages queued to one peer before the gateway takes it for gone (heartbeats alone: hours)."""


class EndpointError(Exception):
    """The endpoint cannot be used as configured; the message says what to change."""


def ipc_path(endpoint: str) -> Path | None:
    return Path(endpoint[len("ipc://") :]) if endpoint.startswith("ipc://") else None


@dataclass
class ServerEndpoint:
    """The bound ROUTER, its disconnect monitor, and the ZAP handler thread that vets its peers.

    ``monitor`` receives an event for every peer connection that closes, naming its fd; a
    message's ``SRCFD`` names the connection it came on. Together they say at once that a peer
    is gone (``ROUTER_NOTIFY`` would too, but it is a draft API the bundled libzmq lacks).
    """

    router: zmq.Socket[Any]
    gatekeeper: ThreadAuthenticator
    monitor: zmq.Socket[Any]

    def disconnected_fds(self) -> list[int]:
        """Fds of peer connections that closed since the last call (never blocks)."""
        fds: list[int] = []
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return fds
            if event["event"] == zmq.EVENT_DISCONNECTED:
                fds.append(int(event["value"]))

    def close(self, linger_ms: int = 1000) -> None:
        """Close all; the context can only terminate once the ZAP and monitor sockets are closed too."""
        self.router.disable_monitor()
        self.monitor.close(linger=0)
        self.router.close(linger=linger_ms)
        self.gatekeeper.stop()


def bind_server(context: zmq.Context[Any], settings: Settings) -> ServerEndpoint:
    """The gateway's ROUTER socket, bound and locked down, with its ZAP handler running."""
    if not settings.socket.startswith(("ipc://", "tcp://")):
        raise EndpointError(f"[zygote] socket must be ipc:// or tcp://, not {settings.socket!r}")
    if settings.socket.startswith("tcp://"):
        _check_curve_settings(settings)
    router: zmq.Socket[Any] = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.setsockopt(zmq.LINGER, 1000)
    router.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME + 1024)
    # A peer that stops reading can hold this many replies; then sends to it fail (EAGAIN) and the
    # gateway ends its session. Output is bounded by per-request credit well below this.
    router.setsockopt(zmq.SNDHWM, ROUTER_SNDHWM)
    if settings.socket.startswith("tcp://"):
        router.setsockopt(zmq.TCP_KEEPALIVE, 1)  # a vanished host closes the connection, in time
        router.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 60)
        router.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 10)
    path = ipc_path(settings.socket)
    gatekeeper = _Gatekeeper(context, PeerPolicy.for_group(settings.socket_group) if path else None)
    gatekeeper.start()
    monitor = router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        _secure_and_bind(router, gatekeeper, settings, path)
    except BaseException:
        router.disable_monitor()
        monitor.close(linger=0)
        router.close(linger=0)
        gatekeeper.stop()
        raise
    return ServerEndpoint(router, gatekeeper, monitor)


def _secure_and_bind(
    router: zmq.Socket[Any], gatekeeper: ThreadAuthenticator, settings: Settings, path: Path | None
) -> None:
    if path is not None:
        _prepare_ipc(path, settings.socket_group)
        router.zap_domain = IPC_ZAP_DOMAIN  # makes libzmq ask the ZAP handler about NULL peers too
        router.bind(settings.socket)
        _restrict(path, 0o660 if settings.socket_group else 0o600, settings.socket_group)
        return
    allowed = {key.encode() for key in settings.curve_allowed_clients}
    gatekeeper.configure_curve_callback("*", credentials_provider=_AllowList(allowed))
    router.curve_secretkey = settings.curve_server_secret_key.encode()
    router.curve_publickey = settings.curve_server_public_key.encode()
    router.curve_server = True
    router.bind(settings.socket)


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
    _restrict(directory, 0o750 if group else 0o700, group)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise EndpointError(f"{path} exists and is not a socket; refusing to replace it")
        if _someone_listens(path):
            raise EndpointError(f"another zygote is already serving on {path}")
        path.unlink()


def _restrict(path: Path, mode: int, group: str) -> None:
    """Owner-only, or also ``group``'s: the socket needs the group too, not only its directory."""
    os.chmod(path, mode)
    if group:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)


def _someone_listens(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _check_curve_settings(settings: Settings) -> None:
    if not (settings.curve_server_secret_key and settings.curve_server_public_key and settings.curve_allowed_clients):
        raise EndpointError(
            "tcp:// needs [zygote] curve_server_public_key, curve_server_secret_key and "
            "curve_allowed_clients; refusing to serve parse requests unauthenticated over TCP"
        )


class _AllowList:
    """ZAP credentials provider: only allow-listed Z85 client keys (the parent class Z85-encodes)."""

    def __init__(self, allowed: set[bytes]) -> None:
        self.allowed = allowed

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.allowed
        if not allowed:
            log.warning("client.unauthorized", transport="tcp", client_key=key.decode(errors="replace"))
        return allowed


@dataclass(frozen=True)
class PeerPolicy:
    """Who may connect over ``ipc://``: the gateway's own uid, or members of ``socket_group``."""

    uid: int
    group_gid: int | None = None
    group_members: frozenset[str] = frozenset()

    @classmethod
    def for_group(cls, group: str) -> PeerPolicy:
        if not group:
            return cls(os.getuid())
        entry = grp.getgrnam(group)
        return cls(os.getuid(), entry.gr_gid, frozenset(entry.gr_mem))

    def refusal(self, address: str) -> str:
        """Why the peer at ZAP ``address`` (``<host>:<uid>:<gid>:<pid>``) may not connect, or ""."""
        credentials = _peer_credentials(address)
        if credentials is None:
            return f"no peer credentials in {address!r} (libzmq without SO_PEERCRED?)"
        uid, gid = credentials
        if uid == self.uid or (
            self.group_gid is not None and (gid == self.group_gid or _user(uid) in self.group_members)
        ):
            return ""
        return f"uid {uid} (gid {gid}) may not use this socket"


def _peer_credentials(address: str) -> tuple[int, int] | None:
    parts = address.rsplit(":", 3)
    if len(parts) != 4:
        return None
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        return None


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


class _Gatekeeper(ThreadAuthenticator):
    """ZAP handler: NULL-mechanism (ipc) peers by uid, CURVE peers by the parent class's key check."""

    def __init__(self, context: zmq.Context[Any], peers: PeerPolicy | None) -> None:
        super().__init__(context)
        self.peers = peers

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        if self.peers is not None and len(msg) >= 6 and msg[5] == b"NULL":
            address = msg[3].decode(errors="replace")
            refusal = self.peers.refusal(address)
            if refusal:
                log.warning("client.unauthorized", transport="ipc", peer=address, reason=refusal)
                self._send_zap_reply(msg[1], b"400", refusal.encode()[:255])
                return
        await super().handle_zap_message(msg)


def _client_curve(dealer: zmq.Socket[Any], settings: Settings) -> None:
    if not (settings.curve_server_public_key and settings.curve_client_public_key and settings.curve_client_secret_key):
        raise EndpointError(
            "tcp:// needs [zygote] curve_server_public_key, curve_client_public_key and curve_client_secret_key"
        )
    dealer.curve_serverkey = settings.curve_server_public_key.encode()
    dealer.curve_publickey = settings.curve_client_public_key.encode()
    dealer.curve_secretkey = settings.curve_client_secret_key.encode()
