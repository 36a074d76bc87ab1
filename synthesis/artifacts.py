"""Images through Django's storage API, content-addressed (the same bytes are stored once)."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from hilapp.imaging import sha256_hex


def save_png(data: bytes, *, folder: str) -> tuple[str, str]:
    """Store PNG bytes; return (storage name, sha256). Saving the same bytes again is a no-op."""
    digest = sha256_hex(data)
    name = f"{folder}/{digest[:2]}/{digest}.png"
    if not default_storage.exists(name):
        saved = default_storage.save(name, ContentFile(data))
        if saved != name:  # a racer stored the same content first; keep one copy
            default_storage.delete(saved)
    return name, digest


def read_bytes(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        data: bytes = handle.read()
    return data
