"""Event ids as text, made without a ``uuid.UUID`` object on the way.

The intake gives every ``trace.raw`` event a random id and the worker every announcement a
deterministic one: one of each a span. ``str(uuid.uuid4())`` costs 2.2 us and
``str(uuid.uuid5(...))`` 2.6 us, most of it in building the ``UUID`` object; these make the same
text in about 1.0 us. Tests hold them to the standard library's output.
"""

from __future__ import annotations

import hashlib
import os
import uuid


def _text(digest: bytes, version: int) -> str:
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | (version << 4)
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    hexed = raw.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def random_id() -> str:
    """A random (version 4) UUID as text, like ``str(uuid.uuid4())``."""
    return _text(os.urandom(16), 4)


def name_id(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``."""
    return _text(hashlib.sha1(namespace.bytes + name.encode()).digest(), 5)
