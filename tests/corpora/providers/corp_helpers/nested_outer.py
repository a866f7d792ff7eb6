"""First link of a chain of imports that fails two modules down."""

from __future__ import annotations

from corp_helpers.nested_inner import TABLES

TABLE_COUNT = len(TABLES)
