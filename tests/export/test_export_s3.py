"""With media on S3 (a local S3-compatible server), the export reads every image through the
storage API, in parallel, and writes the same shards as from the local disk."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from synthesis.export.options import ExportError, ExportOptions
from synthesis.export.service import dataset_export
from synthesis.models import Frame
from tests.export.conftest import Simulated

OPTIONS = ExportOptions(holdout_characters=4, holdout_stories=4, seed=7, shard_max_bytes=40960)


def _s3_storages(settings: Any, env: dict[str, str]) -> dict[str, Any]:
    return {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": env["AWS_STORAGE_BUCKET_NAME"],
                "endpoint_url": env["AWS_S3_ENDPOINT_URL"],
                "access_key": env["AWS_ACCESS_KEY_ID"],
                "secret_key": env["AWS_SECRET_ACCESS_KEY"],
                "region_name": env["AWS_S3_REGION_NAME"],
            },
        },
    }


def _upload(local_s3: Any, bucket: str, media: Path) -> int:
    client = local_s3.client()
    files = [p for p in media.rglob("*") if p.is_file()]
    for path in files:
        client.put_object(
            Bucket=bucket, Key=path.relative_to(media).as_posix(), Body=path.read_bytes()
        )
    return len(files)


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def _count_concurrent_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The most images being read from S3 at once (a one-item list, updated as they are)."""
    from storages.backends.s3 import S3Storage

    real_open, lock, reading, most = S3Storage.open, threading.Lock(), [0], [0]

    def open_counted(self: Any, name: str, mode: str = "rb") -> Any:
        with lock:
            reading[0] += 1
            most[0] = max(most[0], reading[0])
        try:
            handle = real_open(self, name, mode)
            handle.read()  # the download; the export reads it again from memory
            handle.seek(0)
            return handle
        finally:
            with lock:
                reading[0] -= 1

    monkeypatch.setattr(S3Storage, "open", open_counted)
    return most


def test_an_export_from_s3_is_identical_to_one_from_local_disk(
    simulated: Simulated,
    media: Path,
    tmp_path: Path,
    local_s3: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = tmp_path / "local"
    dataset_export(out=local, options=OPTIONS)
    env = local_s3.bucket()
    assert _upload(local_s3, env["AWS_STORAGE_BUCKET_NAME"], media) > 40
    shutil.rmtree(media)  # nothing is left on local disk to read by path
    most_at_once = _count_concurrent_reads(monkeypatch)
    with override_settings(STORAGES=_s3_storages(settings, env)):
        from_s3 = tmp_path / "s3"
        manifest = dataset_export(out=from_s3, options=OPTIONS, readers=8)
    assert manifest["counts"]["frames"] > 30
    files = _files(from_s3)
    assert sum(name.endswith(".tar") for name in files) > 3
    assert files == _files(local)
    assert most_at_once[0] > 1  # read in parallel, not one at a time


def test_a_corrupted_image_on_s3_fails_the_export_with_its_frame(
    simulated: Simulated, media: Path, tmp_path: Path, local_s3: Any, settings: Any
) -> None:
    env = local_s3.bucket()
    bucket = env["AWS_STORAGE_BUCKET_NAME"]
    _upload(local_s3, bucket, media)
    key = max(simulated.expected)
    story, index = key.split("_")
    name = Frame.objects.get(story_id=int(story[1:]), index=int(index[1:])).image
    local_s3.client().put_object(Bucket=bucket, Key=name, Body=b"not the stored image")
    with (
        override_settings(STORAGES=_s3_storages(settings, env)),
        pytest.raises(ExportError, match=f"frame {key}: stored image does not match"),
    ):
        dataset_export(out=tmp_path / "ds", options=ExportOptions(), readers=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]  # nothing half-written
