#!/usr/bin/env python
"""Atheris (libFuzzer) harness for the codec. A script, not a test: pytest does not collect it.

    .venv/bin/pip install atheris          # not a project dependency
    .venv/bin/python tests/protocol/fuzz_codec.py -max_total_time=60

Each input goes through ``protocol_corpus.check_input`` (decode and FrameBuffer; only documented
ProtocolErrors may escape; decoded messages round-trip; streams do not depend on read boundaries).
Unless a corpus directory is given, libFuzzer starts from tests/fuzz_corpus/codec/ and writes the new
inputs it finds there; a failing input is saved there as ``crash-<sha1>``. ``make test`` replays the
whole directory (test_protocol_fuzz_replay.py), so commit the new files you want to keep. Any other
libFuzzer flag passes through (``-runs=N``, ``-jobs=N``, ``-max_len=N``; default ``-max_len=4096``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["protocol"]):
    import protocol.codec
    import protocol.messages  # noqa: F401

from protocol_corpus import CORPUS_DIR, check_input


def test_one_input(data: bytes) -> None:
    check_input(data)


def main(argv: list[str]) -> None:
    args = list(argv)
    flags = [arg for arg in args[1:] if arg.startswith("-")]
    if not [arg for arg in args[1:] if not arg.startswith("-")]:
        CORPUS_DIR.mkdir(parents=True, exist_ok=True)
        args.append(str(CORPUS_DIR))
    if not any(flag.startswith("-artifact_prefix=") for flag in flags):
        args.append(f"-artifact_prefix={CORPUS_DIR}/")
    if not any(flag.startswith("-max_len=") for flag in flags):
        args.append("-max_len=4096")
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
