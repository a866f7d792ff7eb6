"""A helper whose import fails: the team's settings module expects a key nobody set."""

from __future__ import annotations

SETTINGS = {"warehouse": "analytics"}
WAREHOUSE_BUCKET = SETTINGS["warehouse"] + "-" + SETTINGS.get("region", "")
if not SETTINGS.get("region"):
    raise RuntimeError("corp_helpers.broken_config: 'region' is not configured for this deployment")
