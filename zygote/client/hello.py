"""The one place the client builds its ``hello`` (both the dag-processor session and control tools).

Branch ``parity`` moves these builders into ``zygote.handshake`` with ``hello.process`` (the
dag-processor's environment and ``sys.path``, SPEC 4a); once merged this module only re-exports
them. The Hello is secret material from then on: it is built once per session and never logged.
"""

from __future__ import annotations

from protocol import Hello
from zygote.config import Settings
from zygote.handshake import config_fingerprint, versions


def client_hello(client: str, settings: Settings) -> Hello:
    """The dag-processor's hello: versions and the parse-relevant config fingerprint."""
    del settings  # the parity builder reads it for what crosses into a worker
    ours = versions()
    return Hello(
        client=client,
        role="client",
        protocol=ours["protocol"],
        airflow=ours["airflow"],
        python=ours["python"],
        config=config_fingerprint(),
    )


def control_hello(client: str) -> Hello:
    """A ``status``/``reload`` tool's hello: only the protocol version must match."""
    ours = versions()
    return Hello(
        client=client, role="control", protocol=ours["protocol"], airflow=ours["airflow"], python=ours["python"]
    )
