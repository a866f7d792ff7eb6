"""The THP mode the forker decides its opt-out on, read from the kernel's sysfs file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zygote import linux


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("[always] madvise never\n", "always"),
        ("always [madvise] never\n", "madvise"),
        ("always madvise [never]\n", "never"),
    ],
)
def test_the_bracketed_word_is_the_mode(tmp_path: Path, text: str, mode: str) -> None:
    enabled = tmp_path / "enabled"
    enabled.write_text(text)
    assert linux.transparent_huge_pages_mode(str(enabled)) == mode


def test_a_kernel_without_thp_has_no_mode(tmp_path: Path) -> None:
    assert linux.transparent_huge_pages_mode(str(tmp_path / "missing")) == ""


def test_the_opt_out_is_inherited_by_children() -> None:
    pid = os.fork()
    if pid == 0:  # a child opts out, its own child must see it (what the forker's workers rely on)
        code = 1
        try:
            linux.disable_transparent_huge_pages()
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(0 if linux.transparent_huge_pages_disabled() else 1)
            code = os.waitstatus_to_exitcode(os.waitpid(grandchild, 0)[1])
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
