"""SPEC.md and the code describe the same protocol: message table, error codes, limits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from protocol_strategies import MAP_KIND, field_kinds

from protocol import codec, limits
from protocol.errors import ErrorCode
from protocol.messages import CHANNELS, MESSAGE_TYPES, Message

# Via a submodule: an editable install may present ``protocol`` as a namespace package (no __file__).
SPEC = (Path(codec.__file__).parent / "SPEC.md").read_text(encoding="utf-8")

SPEC_KINDS = {
    "str": "str",
    "RequestId": "RequestId",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "bytes": "bytes",
    "map": MAP_KIND,
}


def section(number: int) -> str:
    match = re.search(rf"^## {number}\. .*?(?=^## |\Z)", SPEC, flags=re.MULTILINE | re.DOTALL)
    assert match, f"SPEC.md has no section {number}"
    return match.group(0)


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header


def spec_messages() -> dict[str, list[tuple[str, str, bool]]]:
    """``t`` -> [(field, kind, optional)] from the table of section 3."""
    messages: dict[str, list[tuple[str, str, bool]]] = {}
    for type_cell, _direction, fields_cell in table_rows(section(3)):
        name = type_cell.strip("`")
        cleaned = re.sub(r"\([^)]*\)|\[[^\]]*\]", "", fields_cell)
        fields: list[tuple[str, str, bool]] = []
        if cleaned.strip() != "none":
            for part in cleaned.split(","):
                match = re.fullmatch(r"\s*`(\w+)`(\?)?\s*(\w+)?\s*", part)
                assert match, f"cannot read field {part!r} of {name}"
                field, optional, kind = match.groups()
                # A bare `id` is a RequestId (section 3 lists its kind once, at `spawn`).
                fields.append((field, SPEC_KINDS[kind or "RequestId"], optional is not None))
        messages[name] = fields
    return messages


def test_spec_table_is_read() -> None:
    messages = spec_messages()
    assert len(messages) >= 19
    assert messages["heartbeat"] == [("load", MAP_KIND, True)]
    assert ("config", MAP_KIND, True) in messages["hello"]


def test_message_types_match_spec() -> None:
    assert set(spec_messages()) == {cls.TYPE for cls in MESSAGE_TYPES}


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.TYPE)
def test_fields_match_spec(cls: type[Message]) -> None:
    assert spec_messages()[cls.TYPE] == field_kinds(cls)


def test_error_codes_match_spec() -> None:
    codes = {code.strip("`") for row in table_rows(section(6)) for code in row[0].split(", ")}
    assert codes == {code.value for code in ErrorCode}


def test_channels_match_spec() -> None:
    output_row = next(row for row in table_rows(section(3)) if row[0] == "`output`")
    listed = re.search(r"one of ([^)]*)\)", output_row[2])
    assert listed
    assert tuple(name.strip(" `") for name in listed.group(1).split(",")) == CHANNELS


def size(text: str) -> int:
    match = re.fullmatch(r"([\d,]+)(?: (KiB|MiB|characters))?", text)
    assert match, text
    number = int(match.group(1).replace(",", ""))
    return number * {"KiB": 1024, "MiB": 1024 * 1024}.get(match.group(2) or "", 1)


def test_limits_match_spec() -> None:
    table = {row[0].replace("`", ""): size(row[1]) for row in table_rows(section(8))}
    assert table["MAX_FRAME"] == limits.MAX_FRAME
    assert table["MAX_DATA (bin)"] == limits.MAX_DATA
    assert table["str"] == limits.MAX_STR
    assert table["RequestId"] == limits.MAX_ID
    assert table["array / map entries"] == limits.MAX_CONTAINER
    assert table["nesting in map fields"] == limits.MAX_DEPTH
    assert table["undelivered input per request"] == 64 * 1024 * 1024


def test_protocol_version_matches_spec() -> None:
    assert SPEC.startswith(f"# airflow-zygote wire protocol, version {limits.PROTOCOL_VERSION}\n")
    assert f"`v` != {limits.PROTOCOL_VERSION} -> `version_mismatch`" in SPEC
