"""pandas and pyarrow at import time: schemas and reference frames several DAGs share."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

EVENTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("amount", pa.float64()),
        ("country", pa.string()),
    ]
)
COUNTRIES = pd.DataFrame({"code": ["DE", "FR", "NL", "PL", "SE"], "weight": [0.3, 0.25, 0.2, 0.15, 0.1]})


def partitions(days: int) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in pd.date_range("2024-01-01", periods=days, freq="D")]


def arrow_columns() -> list[str]:
    return [field.name for field in EVENTS_SCHEMA]
