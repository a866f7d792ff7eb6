"""The README tells the truth about what the code declares."""

from __future__ import annotations

from pathlib import Path

from zygote.cli.definition import ZYGOTE_COMMANDS
from zygote.config import OPTIONS

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_config_option_is_documented_with_its_default() -> None:
    for option in OPTIONS:
        assert f"| `{option.name}` |" in README, option.name
        assert f"`{option.default or '(empty)'}`" in README, option.name


def test_every_command_is_documented() -> None:
    for command in ZYGOTE_COMMANDS:
        assert f"airflow zygote {command.name}" in README, command.name


def test_the_two_setup_commands_come_first() -> None:
    quick_start = README.index("## Quick start")
    assert README.index("make run") > quick_start
    assert README.index("make test") > quick_start
    assert quick_start < README.index("## Configuration")
