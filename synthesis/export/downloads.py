"""A finished export's files for users: published to shared storage, listed as download links.

On the embedded defaults web and worker share a disk: the API's ``files`` action streams the
files listed in the export folder's manifest.json. In production they share nothing but the
database and the bucket: the worker copies the finished folder into the media storage under
``exports/export-<id>/``, and each file is listed with a signed, expiring URL.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.urls import reverse

from hilapp.media import media_url
from synthesis.export.service import LAYOUT, MANIFEST_NAME
from synthesis.models import ExportJob
from synthesis.states import ExportStatus

DOWNLOADS_SHOWN = 200


def export_publish(folder: Path, prefix: str) -> list[dict[str, Any]] | None:
    """Copy every file of ``folder`` to ``prefix/…`` in the media storage; the published list, or
    None when that storage is this host's disk (which web processes read directly). A file left
    by an earlier, interrupted publish of the same job is replaced, not renamed."""
    if "FileSystemStorage" in settings.MEDIA_STORAGE_BACKEND:
        return None
    published = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        name = f"{prefix}/{relative}"
        default_storage.delete(name)  # no-op when absent
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


def file_description(path: str) -> str:
    for layout_path, (_fmt, what) in LAYOUT.items():
        # LAYOUT's "webdataset/{train,heldout}/frames-NNNNN.tar" as a glob
        if fnmatch.fnmatch(path, re.sub(r"\{[^}]*\}|NNNNN", "*", layout_path)):
            return what
    return "an image that the OmniGen2 lines refer to" if path.startswith("omnigen2/") else ""


def _local_files(job: ExportJob) -> list[dict[str, Any]]:
    path = Path(job.out_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
        sizes = {MANIFEST_NAME: path.stat().st_size}  # the manifest does not list itself
    except (OSError, ValueError):
        return []
    sizes |= {name: info.get("bytes", 0) for name, info in manifest.get("files", {}).items()}
    base = reverse("export-files", args=[job.pk])
    return [
        {"name": name, "bytes": size, "url": f"{base}?{urlencode({'path': name})}"}
        for name, size in sizes.items()
    ]


def export_downloads(job: ExportJob) -> dict[str, Any]:
    """The job's files (manifest first), each with a URL and what it holds; empty unless done."""
    if job.status != ExportStatus.DONE:
        return {"files": [], "count": 0, "where": ""}
    published = published_files(job.manifest)
    files = published or _local_files(job)
    files.sort(key=lambda f: (f["name"] != MANIFEST_NAME, f["name"]))
    for f in files:
        f["what"] = file_description(f["name"])
    where = "shared storage (signed links)" if published else "the server's disk"
    return {"files": files[:DOWNLOADS_SHOWN], "count": len(files), "where": where}
