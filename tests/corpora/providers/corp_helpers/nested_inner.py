"""Second link: reads a mapping entry that is missing."""

from __future__ import annotations

CATALOG = {"sales": ["orders", "refunds"], "marketing": ["campaigns"]}
TABLES = CATALOG["sales"] + CATALOG["finance"]
