"""What a forker generation read from Airflow's configuration, sent to the gateway in ``ready.config``.

The forker re-reads the configuration at every generation; the gateway does not import Airflow.
So a reload refreshes the gateway through this map (SPEC.md 7): the ``[zygote]`` settings, the
allowed roots as configured (resolved only when a path is checked: symlinked roots are swapped
under running processes) and the handshake fingerprint. Sensitive options (the CURVE secret keys)
are left out: the gateway reads those itself and they never cross a link.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from zygote.config import OPTIONS, Settings, configured_roots

SENSITIVE = frozenset(option.name for option in OPTIONS if option.sensitive)


def generation_config(settings: Settings) -> dict[str, Any]:
    from zygote.handshake import config_fingerprint

    values = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in dataclasses.asdict(settings).items()
        if name not in SENSITIVE
    }
    return {
        "settings": values,
        "roots": list(configured_roots(settings)),
        "fingerprint": config_fingerprint(),
    }
