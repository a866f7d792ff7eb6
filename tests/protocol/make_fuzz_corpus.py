#!/usr/bin/env python
"""Write the codec's seed corpus to tests/fuzz_corpus/codec/ and its manifest.

    .venv/bin/python tests/protocol/make_fuzz_corpus.py

Deterministic (a fixed seed): re-running it rewrites the same files. Seeds are valid bodies and
frames of every message type, the bad inputs of SPEC.md section 1, truncations, mutations and
boundary sizes. Files the script did not write (atheris finds, ``crash-*``) are left alone; the
manifest ``codec-expected.json`` records the outcome of the generated files only. Re-run it after an
intended change of the codec's behaviour and review the manifest diff.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from protocol_corpus import CORPUS_DIR, MANIFEST, check_input, load_manifest
from protocol_strategies import EXAMPLES, MAP_KIND, WRONG_VALUES, body_of, field_kinds, pack

from protocol.codec import encode, frame
from protocol.limits import LENGTH_PREFIX, MAX_CONTAINER, MAX_DATA, MAX_DEPTH, MAX_FRAME, MAX_ID, MAX_STR
from protocol.messages import MESSAGE_TYPES, Hello, Message, Spawn

SEED = 20_240_601
MAX_CORPUS_BYTES = 2 * 1024 * 1024
INTERESTING_BYTES = [0x00, 0x01, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3]
INTERESTING_BYTES += [0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xD4, 0xD8, 0xD9, 0xDB, 0xDC]
INTERESTING_BYTES += [0xDD, 0xDE, 0xDF, 0xE0, 0xFF]


def prefixed(body: bytes) -> bytes:
    return len(body).to_bytes(LENGTH_PREFIX, "big") + body


def raw_ext(code: int, data: bytes) -> bytes:
    fixed = {1: b"\xd4", 2: b"\xd5", 4: b"\xd6", 8: b"\xd7", 16: b"\xd8"}
    kind = code.to_bytes(1, "big", signed=True)
    if len(data) in fixed:
        return fixed[len(data)] + kind + data
    if len(data) < 2**8:
        return b"\xc7" + len(data).to_bytes(1, "big") + kind + data
    return b"\xc8" + len(data).to_bytes(2, "big") + kind + data


class Generator:
    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.kinds: dict[str, Callable[[], Any]] = {
            "str": self.text,
            "RequestId": lambda: "".join(
                rnd.choice(string.ascii_letters + string.digits + "._:-") for _ in range(rnd.randint(1, MAX_ID))
            ),
            "int": lambda: rnd.choice(
                [0, 1, -1, 2**31, -(2**31), 2**63 - 1, 2**64 - 1, -(2**63), rnd.randint(-999, 99999)]
            ),
            "float": lambda: rnd.choice([0.0, -0.0, 1.5, 1e300, -2.5e-300, float("inf"), rnd.random() * 100]),
            "bool": lambda: rnd.random() < 0.5,
            "bytes": lambda: rnd.randbytes(rnd.choice([0, 1, 5, 31, 32, 255, 256])),
            MAP_KIND: lambda: self.plain_map(MAX_DEPTH - 1),
        }

    def text(self) -> str:
        alphabet = "abc xyz/._-\u00e9\u4e2d\U0001f600\n\t\x00"
        return "".join(self.rnd.choice(alphabet) for _ in range(self.rnd.choice([0, 1, 3, 31, 32, 40])))

    def plain(self, depth: int) -> Any:
        choice = self.rnd.randrange(9 if depth > 0 else 7)
        if choice == 7:
            return [self.plain(depth - 1) for _ in range(self.rnd.randint(0, 3))]
        if choice == 8:
            return self.plain_map(depth - 1)
        return [None, True, self.kinds["int"](), self.kinds["float"](), self.text(), self.kinds["bytes"](), False][
            choice
        ]

    def plain_map(self, depth: int) -> dict[str, Any]:
        return {self.text()[:8]: self.plain(depth) for _ in range(self.rnd.randint(0, 3))}

    def message(self, cls: type[Message]) -> Message:
        values = {
            name: self.kinds[kind]()
            for name, kind, optional in field_kinds(cls)
            if not optional or self.rnd.random() < 0.7
        }
        return cls(**values)

    def mutate(self, data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(self.rnd.randint(1, 3)):
            action = self.rnd.randrange(6)
            pos = self.rnd.randrange(len(out) + 1)
            if action == 0 and out:
                out[min(pos, len(out) - 1)] ^= 1 << self.rnd.randrange(8)
            elif action == 1 and out:
                out[min(pos, len(out) - 1)] = self.rnd.choice(INTERESTING_BYTES)
            elif action == 2:
                out[pos:pos] = bytes([self.rnd.choice(INTERESTING_BYTES)])
            elif action == 3 and out:
                del out[pos : pos + self.rnd.randint(1, 4)]
            elif action == 4 and out:
                chunk = out[pos : pos + self.rnd.randint(1, 8)]
                out[pos:pos] = chunk
            else:
                other = encode(EXAMPLES[self.rnd.choice(MESSAGE_TYPES)])
                out[pos:] = other[self.rnd.randrange(len(other)) :]
        return bytes(out)


Seeds = list[tuple[str, bytes]]


def valid_seeds(rnd: random.Random, gen: Generator, valid: list[Message]) -> Seeds:
    """Valid bodies, frames and streams, their truncations and mutations."""
    out: Seeds = [(f"valid-{message.TYPE}", encode(message)) for message in valid]
    out += [(f"frame-{cls.TYPE}", frame(EXAMPLES[cls])) for cls in MESSAGE_TYPES]
    for _ in range(20):
        out.append(("stream", b"".join(frame(rnd.choice(valid)) for _ in range(rnd.randint(2, 5)))))
    for cls in MESSAGE_TYPES:
        body = encode(EXAMPLES[cls])
        out += [(f"truncated-{cls.TYPE}", body[:cut]) for cut in sorted({0, 1, len(body) // 2, len(body) - 1})]
        framed = frame(EXAMPLES[cls])
        out.append((f"cut-frame-{cls.TYPE}", framed[: rnd.randrange(1, len(framed))]))
    for _ in range(110):
        out.append(("mutated", gen.mutate(encode(rnd.choice(valid)))))
    for _ in range(30):
        stream = b"".join(frame(rnd.choice(valid)) for _ in range(rnd.randint(1, 3)))
        out.append(("mutated-stream", gen.mutate(stream)))
    return out


def msgpack_seeds() -> Seeds:
    """SPEC.md section 1, steps 2 and 3."""
    hello = body_of(EXAMPLES[Hello])
    out: Seeds = [
        ("not-msgpack", data)
        for data in [b"", b"\xc1", b"\xc1\x00", b"\x81\xc1\x00", b"\xa2\xff\xfe", b"\x81\xa1\xff\x01", b"\xc0\xc0"]
    ]
    out += [("trailing", encode(EXAMPLES[cls]) + b"\x00") for cls in MESSAGE_TYPES[:5]]
    for code in (0, 5, 127, -2, -128, -1):
        for size in (0, 1, 4, 8, 12, 16, 3):
            ext = raw_ext(code, bytes(size))
            out += [("ext", ext), ("ext-v2", b"\x83\xa1v\x02\xa1t\xa9heartbeat\xa1x" + ext)]
    out.append(("ext-big", raw_ext(7, bytes(MAX_STR + 1))))
    for key in (1, -1, None, True, 1.5, b"v"):
        out.append(("key", pack({"v": 2, "t": "heartbeat", key: 1})))
        out.append(("nested-key", pack({**hello, "config": {"a": [{key: 1}]}})))
    out.append(("deep-ok", b"\x83\xa1v\x02\xa1t\xa9heartbeat\xa1x" + b"\x91" * 1023 + b"\xc0"))
    out.append(("deep", b"\x91" * 1025 + b"\xc0"))
    out.append(("deep-map", b"\x81\xa1a" * 1025 + b"\xc0"))
    out += [("not-a-map", pack(value)) for value in (None, True, 1, 1.5, "x", b"x", [], [hello])]
    return out


def field_seeds(rnd: random.Random) -> Seeds:
    """SPEC.md section 1, steps 4 to 6."""
    hello = body_of(EXAMPLES[Hello])
    out: Seeds = [("version", pack({**hello, "v": v})) for v in (None, "1", 1.0, True, 0, 2, -1, 2**64 - 1)]
    out.append(("no-version", pack({k: v for k, v in hello.items() if k != "v"})))
    for type_name in (None, 1, b"hello", "", "Hello", "hello ", "status_request"):
        out.append(("type", pack({**hello, "t": type_name})))
    out.append(("no-type", pack({k: v for k, v in hello.items() if k != "t"})))
    for cls in MESSAGE_TYPES:
        body = body_of(EXAMPLES[cls])
        fields = field_kinds(cls)
        if fields:
            name, kind, _optional = rnd.choice(fields)
            out.append((f"missing-{cls.TYPE}", pack({k: v for k, v in body.items() if k != name})))
            out.append((f"wrong-{cls.TYPE}", pack({**body, name: rnd.choice(WRONG_VALUES[kind])})))
        out.append((f"extra-{cls.TYPE}", pack({**body, "extra": 1})))
    spawn = body_of(EXAMPLES[Spawn])
    for request_id in ("", "x" * MAX_ID, "x" * (MAX_ID + 1), "a b", "\u00e9", "a:b.c-d_e"):
        out.append(("request-id", pack({**spawn, "id": request_id})))
    return out


def boundary_seeds(valid: list[Message]) -> Seeds:
    """Sizes at and just over the limits of SPEC.md section 8 (none over ~70 KB)."""
    spawn = body_of(EXAMPLES[Spawn])
    reply = {"v": 1, "t": "status_reply", "id": "s"}
    nested: Any = 1
    for _ in range(MAX_DEPTH):
        nested = {"k": nested}
    return [
        ("str-max", pack({**spawn, "path": "p" * MAX_STR})),
        ("str-over", pack({**spawn, "path": "p" * (MAX_STR + 1)})),
        ("str-over-cut", b"\xdb" + (MAX_STR + 1).to_bytes(4, "big") + b"pp"),
        ("bin-over-cut", b"\xc6" + (MAX_DATA + 1).to_bytes(4, "big") + b"\x00"),
        ("array-max", pack({**reply, "status": {"a": [None] * MAX_CONTAINER}})),
        ("array-over", pack({**reply, "status": {"a": [None] * (MAX_CONTAINER + 1)}})),
        ("array-over-header", b"\xdd" + (MAX_CONTAINER + 1).to_bytes(4, "big")),
        ("map-over-header", b"\xdf" + (2**32 - 1).to_bytes(4, "big")),
        ("map-depth-max", pack({**reply, "status": nested})),
        ("map-depth-over", pack({**reply, "status": {"k": nested}})),
        ("stream-oversized", (MAX_FRAME + 1).to_bytes(LENGTH_PREFIX, "big")),
        ("stream-max-announced", MAX_FRAME.to_bytes(LENGTH_PREFIX, "big") + b"\x80"),
        ("stream-empty-frame", prefixed(b"")),
        ("stream-good-then-bad", frame(EXAMPLES[Hello]) + prefixed(b"\xc1") + frame(valid[0])),
    ]


def seeds() -> Seeds:
    rnd = random.Random(SEED)
    gen = Generator(rnd)
    valid: list[Message] = []
    for cls in MESSAGE_TYPES:
        valid.append(EXAMPLES[cls])
        valid += [gen.message(cls) for _ in range(4)]
    return [*valid_seeds(rnd, gen, valid), *msgpack_seeds(), *field_seeds(rnd), *boundary_seeds(valid)]


def main() -> None:
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    for name in load_manifest():  # the previous run's files; atheris finds stay
        (CORPUS_DIR / name).unlink(missing_ok=True)
    manifest: dict[str, Any] = {}
    for label, data in seeds():
        name = f"{label}-{hashlib.sha1(data).hexdigest()[:12]}"
        if name in manifest:
            continue
        (CORPUS_DIR / name).write_bytes(data)
        manifest[name] = check_input(data)
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in CORPUS_DIR.iterdir())
    print(f"{len(manifest)} seeds, corpus {total} bytes in {CORPUS_DIR}")
    if total > MAX_CORPUS_BYTES:
        raise SystemExit(f"the corpus is over {MAX_CORPUS_BYTES} bytes")


if __name__ == "__main__":
    main()
