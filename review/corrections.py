"""Corrected images uploaded with an HV3 "correct" vote: where they are stored."""

from __future__ import annotations

import hashlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


def _image_extension(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    return "webp"


def correction_store(data: bytes) -> str:
    """Save a validated correction image under a content-addressed name; return that name."""
    name = f"review/corrections/{hashlib.sha256(data).hexdigest()}.{_image_extension(data)}"
    if default_storage.exists(name):
        return name
    return default_storage.save(name, ContentFile(data))
