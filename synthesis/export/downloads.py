"""Selector: the files of a finished export as browser download links, with what each holds.

Exports published to shared storage (S3) have signed URLs in the job's manifest; exports that
stay on the server's disk are streamed by the API's ``files`` action, which a logged-in admin's
session may call. The file list of a local export is read from its manifest.json.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse

from synthesis.export.publish import published_files
from synthesis.export.service import LAYOUT, MANIFEST_NAME
from synthesis.models import ExportJob
from synthesis.states import ExportStatus

DOWNLOADS_SHOWN = 200


def _pattern(layout_path: str) -> str:
    """LAYOUT's "webdataset/{train,heldout}/frames-NNNNN.tar" as a glob."""
    return re.sub(r"\{[^}]*\}", "*", layout_path).replace("NNNNN", "*")


def file_description(path: str) -> str:
    for layout_path, (_fmt, what) in LAYOUT.items():
        if fnmatch.fnmatch(path, _pattern(layout_path)):
            return what
    if path.startswith("omnigen2/"):
        return "an image that the OmniGen2 lines refer to"
    return ""


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
    return {
        "files": files[:DOWNLOADS_SHOWN],
        "count": len(files),
        "where": "shared storage (signed links)" if published else "the server's disk",
    }


def format_guide() -> list[dict[str, str]]:
    """What each export format writes, for the exports page (from the export's own layout)."""
    return [
        {"path": path, "format": fmt or "every export", "what": what}
        for path, (fmt, what) in LAYOUT.items()
    ]
