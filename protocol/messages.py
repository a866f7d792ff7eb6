"""Every message of protocol version 1, as frozen dataclasses.

A message's wire form is a msgpack map: ``{"v": 1, "t": <TYPE>, <field>: <value>, ...}`` with
exactly the fields declared here (SPEC.md, "Messages"). Field annotations double as the schema:
the codec validates each field against the annotation string (see ``codec._FIELD_CHECKS``).
They are listed in the order of SPEC.md section 3: the session, a parse request, control, and the
messages inside the zygote (gateway <-> forker, worker/probe -> forker); each docstring names its
direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

RequestId = str
"""1-64 characters from ``[A-Za-z0-9._:-]``, chosen by the client, unique among its open requests."""

CHANNELS = ("requests", "stdout", "stderr", "logs", "crash")
"""Worker output channels relayed to the client, in the order their fds are passed."""


@dataclass(frozen=True)
class Message:
    """Base of all messages; ``TYPE`` is the wire name (the ``t`` key)."""

    TYPE: ClassVar[str] = ""


@dataclass(frozen=True)
class Hello(Message):
    """Client -> gateway, first message of a session. ``role`` is ``client`` or ``control``."""

    TYPE: ClassVar[str] = "hello"
    client: str
    role: str
    protocol: int
    airflow: str
    python: str
    config: dict[str, Any] = field(default_factory=dict)
    process: dict[str, Any] = field(default_factory=dict)
    """``{"env": {...}, "sys_path": [...]}`` of the client process (SPEC.md, "What crosses into a worker")."""


@dataclass(frozen=True)
class Welcome(Message):
    """Gateway -> client: the handshake succeeded; the session parameters."""

    TYPE: ClassVar[str] = "welcome"
    server: str
    protocol: int
    airflow: str
    python: str
    gateway_pid: int
    heartbeat_interval: float
    credit_window: int
    load: dict[str, Any] = field(default_factory=dict)
    """What the gateway can take right now (SPEC.md, "Load"), so the client decides without waiting."""


@dataclass(frozen=True)
class Heartbeat(Message):
    """Either direction; any message counts as liveness, this one exists for idle sessions."""

    TYPE: ClassVar[str] = "heartbeat"
    load: dict[str, Any] = field(default_factory=dict)
    """Gateway -> client only: as :attr:`Welcome.load`, refreshed with every heartbeat."""


@dataclass(frozen=True)
class Error(Message):
    """A typed failure. With a non-empty ``id`` it is the terminal reply for that request."""

    TYPE: ClassVar[str] = "error"
    id: str
    code: str
    message: str


@dataclass(frozen=True)
class Spawn(Message):
    """Client -> gateway -> forker: fork a worker that parses ``path`` (Airflow's own entrypoint)."""

    TYPE: ClassVar[str] = "spawn"
    id: RequestId
    path: str
    bundle_path: str
    bundle_name: str
    timeout: float
    cwd: str
    process: dict[str, Any] = field(default_factory=dict)
    """Gateway -> forker only: the session's ``Hello.process`` (a client sends ``{}``)."""


@dataclass(frozen=True)
class Started(Message):
    """Forker -> gateway -> client: the worker is forked; from here the request is never re-run."""

    TYPE: ClassVar[str] = "started"
    id: RequestId
    pid: int
    generation: int
    fork_ms: float


@dataclass(frozen=True)
class Input(Message):
    """Client -> gateway: bytes for the worker's ``requests`` channel (what the manager sends it)."""

    TYPE: ClassVar[str] = "input"
    id: RequestId
    data: bytes


@dataclass(frozen=True)
class Output(Message):
    """Gateway -> client: bytes the worker wrote on one of :data:`CHANNELS`."""

    TYPE: ClassVar[str] = "output"
    id: RequestId
    channel: str
    data: bytes


@dataclass(frozen=True)
class Credit(Message):
    """Client -> gateway: the client delivered ``size`` more bytes of this request's output locally."""

    TYPE: ClassVar[str] = "credit"
    id: RequestId
    size: int


@dataclass(frozen=True)
class Signal(Message):
    """Client -> gateway -> forker: deliver ``signum`` to the worker (no-op once it has exited)."""

    TYPE: ClassVar[str] = "signal"
    id: RequestId
    signum: int


@dataclass(frozen=True)
class Exited(Message):
    """Terminal reply: the worker ended. ``exit_code`` < 0 means killed by signal ``-exit_code``."""

    TYPE: ClassVar[str] = "exited"
    id: RequestId
    exit_code: int
    outcome: str
    stats: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    """Why the zygote ended the worker, worded where it was decided, from the limit actually enforced."""


@dataclass(frozen=True)
class StatusRequest(Message):
    """Ask for the zygote's state (gateway -> forker too, for the forker's part)."""

    TYPE: ClassVar[str] = "status"
    id: RequestId


@dataclass(frozen=True)
class StatusReply(Message):
    """The answer to :class:`StatusRequest`; keys documented in the README."""

    TYPE: ClassVar[str] = "status_reply"
    id: RequestId
    status: dict[str, Any]


@dataclass(frozen=True)
class Reload(Message):
    """Start a new forker generation; answered with :class:`Ack` once it is serving."""

    TYPE: ClassVar[str] = "reload"
    id: RequestId


@dataclass(frozen=True)
class Ack(Message):
    """A control request succeeded."""

    TYPE: ClassVar[str] = "ack"
    id: RequestId
    detail: str


@dataclass(frozen=True)
class Ready(Message):
    """Forker -> gateway: imports done, heap frozen, accepting ``spawn``."""

    TYPE: ClassVar[str] = "ready"
    generation: int
    pid: int
    airflow: str
    python: str
    frozen: int
    config: dict[str, Any] = field(default_factory=dict)
    """What this generation read from Airflow's config for the gateway (SPEC.md, "Inside the zygote")."""


@dataclass(frozen=True)
class Drain(Message):
    """Gateway -> forker: accept no more spawns, exit once the running workers have ended."""

    TYPE: ClassVar[str] = "drain"
    deadline_s: float


@dataclass(frozen=True)
class WorkerReport(Message):
    """Worker -> forker, as the worker exits: imports, GC time and memory it measured.

    ``ending`` is the worker's own word that it is exiting: ``exit_code`` (what it passes to
    ``os._exit``) and its CPU time and peak RSS, sent once its channels are shut, so the forker can
    answer the request before the kernel has torn the process down (SPEC.md 7).
    """

    TYPE: ClassVar[str] = "worker_report"
    modules: dict[str, Any]
    gc: dict[str, Any]
    memory: dict[str, Any]
    ending: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeReport(Message):
    """Probe child -> forker: the verdict on one preload candidate, or (``module`` "") on its test fork.

    After its import verdicts the probe forks once. A module whose at-fork hook left something in
    the probe is reported again, rejected; then one report with an empty ``module`` says whether
    the fork left anything those reports do not explain (``ok`` false: ``kind`` and ``reason``
    say what).
    """

    TYPE: ClassVar[str] = "probe_report"
    module: str
    ok: bool
    reason: str
    import_s: float
    memory_delta: int
    kind: str = ""
    """Why it was rejected, as a kind (``zygote.forker.verdicts.Fault``); "" when ``ok``."""


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Hello,
    Welcome,
    Heartbeat,
    Error,
    Spawn,
    Started,
    Input,
    Output,
    Credit,
    Signal,
    Exited,
    StatusRequest,
    StatusReply,
    Reload,
    Ack,
    Ready,
    Drain,
    WorkerReport,
    ProbeReport,
)
