"""Replay the codec's fuzz corpus (tests/fuzz_corpus/codec/) on every test run.

Each file goes through ``decode`` and ``FrameBuffer`` (see ``protocol_corpus.check_input``): only
documented ProtocolError subclasses may escape, whatever decodes must round-trip, and a stream must
deliver the same messages however it is split into reads. Files written by ``make_fuzz_corpus.py``
must also keep the outcome recorded in ``codec-expected.json``; after an intended change of the
codec's behaviour, re-run the script and review the manifest diff. Files added by the atheris harness
(``fuzz_codec.py``), including ``crash-*`` reproducers, are checked for the properties only.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from protocol_corpus import CORPUS_DIR, ERRORS, check_input, corpus_files, load_manifest

from protocol.messages import MESSAGE_TYPES

FILES = corpus_files()
MANIFEST = load_manifest()
MAX_CORPUS_BYTES = 2 * 1024 * 1024


def test_corpus_is_there() -> None:
    assert CORPUS_DIR.is_dir(), "run tests/protocol/make_fuzz_corpus.py"
    assert len(FILES) >= 300
    assert sum(path.stat().st_size for path in FILES) < MAX_CORPUS_BYTES


def test_manifest_lists_existing_files() -> None:
    assert len(MANIFEST) >= 300
    missing = sorted(set(MANIFEST) - {path.name for path in FILES})
    assert not missing, f"corpus files missing: {missing[:5]}"


def test_corpus_covers_every_type_and_error() -> None:
    decoded = Counter(outcome["decode"] for outcome in MANIFEST.values())
    streamed = Counter(kind for outcome in MANIFEST.values() for kind in outcome["stream"])
    for cls in MESSAGE_TYPES:
        assert decoded[cls.TYPE] >= 1, f"no seed decodes to {cls.TYPE}"
        assert streamed[cls.TYPE] >= 1, f"no seed stream delivers {cls.TYPE}"
    for error in ERRORS:
        assert decoded[error.__name__] >= 1, f"no seed body raises {error.__name__}"
    for end in ("eof", "MalformedMessage", "TruncatedMessage", "OversizedMessage"):
        assert streamed[end] >= 1, f"no seed stream ends with {end}"


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_replay(path: Path) -> None:
    outcome = check_input(path.read_bytes())
    if path.name in MANIFEST:
        assert outcome == MANIFEST[path.name]
