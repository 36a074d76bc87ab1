"""Finished exports in the shared storage, so that any web process can hand them out.

An export is written by a worker into its own folder. On the embedded defaults web and worker
share that disk and the API streams files from it. In production they share nothing but the
database and the bucket: the worker copies the finished folder into the media storage under
``exports/export-<id>/``, and the API lists each file with a signed, expiring URL (the bucket's
presigned URL on S3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from hilapp.media import media_url


def storage_is_shared() -> bool:
    """Is media in a storage other processes reach (not this host's file system)?"""
    return "FileSystemStorage" not in settings.MEDIA_STORAGE_BACKEND


def export_publish(folder: Path, prefix: str) -> list[dict[str, Any]]:
    """Copy every file of ``folder`` to ``prefix/…`` in the media storage; the published list.

    A file left by an earlier, interrupted publish of the same job is replaced, not renamed.
    """
    published = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        name = f"{prefix}/{relative}"
        if default_storage.exists(name):
            default_storage.delete(name)
        with path.open("rb") as handle:
            saved = default_storage.save(name, File(handle, name=path.name))
        published.append({"name": relative, "storage_name": saved, "bytes": path.stat().st_size})
    return published


def published_files(manifest: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The published files of a finished job, each with a signed URL (empty if unpublished)."""
    return [
        {"name": f["name"], "bytes": f["bytes"], "url": media_url(f["storage_name"])}
        for f in (manifest or {}).get("published") or []
    ]
