"""Deterministic choices: SHA-256 over the arguments, never ``hash()`` (salted per process)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()


def pick(key: bytes, options: Sequence[str], avoid: str | None) -> str:
    choices = [o for o in options if o != avoid] or list(options)
    return choices[int.from_bytes(key[:4], "big") % len(choices)]
