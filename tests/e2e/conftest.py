"""Fixtures shared by the hostile-input modules (each defines its own module-scoped ``hostile``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hostile_support import Hostile
from zygote_harness import wait_for


@pytest.fixture
def conn(hostile: Hostile) -> Iterator[Any]:
    """A client session (relay thread and ledger) to the module's hostile zygote, connected."""
    from zygote.client.connection import ZygoteConnection
    from zygote.client.ledger import Ledger

    connection = ZygoteConnection(hostile.zygote.settings, Ledger())
    wait_for(lambda: connection.available, 30, "the client to connect")
    yield connection
    connection.close()
