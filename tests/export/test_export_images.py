"""Images are read by a pool of threads through the storage API: the same bytes whatever their
number; a bad or missing image, or a frame without a stored digest, fails the export with the
frame's key and publishes nothing; a Celery worker's prefork child can run an export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from synthesis.export.jobs import export_job_start
from synthesis.export.options import ExportError, ExportOptions
from synthesis.export.service import dataset_export
from synthesis.models import ExportJob, Frame
from synthesis.states import ExportStatus
from tests.conftest import wait_until
from tests.export.conftest import Simulated

SMALL_SHARDS = ExportOptions(shard_max_bytes=40960)  # several shards
EVERYTHING = ExportOptions(
    formats=("webdataset", "parquet", "omnigen2"),
    holdout_characters=2,
    holdout_stories=2,
    shard_max_bytes=40960,
)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("options", [SMALL_SHARDS, EVERYTHING], ids=["shards", "everything"])
def test_the_same_bytes_with_any_number_of_readers(
    simulated: Simulated, tmp_path: Path, options: ExportOptions
) -> None:
    exports = {
        readers: _files(_export_to(tmp_path / f"r{readers}", options, readers=readers))
        for readers in (1, 3, 16)
    }
    serial = exports[1]
    assert sum(name.startswith("webdataset/train/frames-") for name in serial) > 2
    for readers in (3, 16):
        assert exports[readers].keys() == serial.keys()
        differ = [name for name in serial if exports[readers][name] != serial[name]]
        assert differ == [], f"{readers} readers changed {differ}"


def _frame_of(key: str) -> Frame:
    story, index = key.split("_")
    return Frame.objects.get(story_id=int(story[1:]), index=int(index[1:]))


def _export_to(out: Path, options: ExportOptions, *, readers: int | None = None) -> Path:
    dataset_export(out=out, options=options, readers=readers)
    return out


@pytest.mark.parametrize("readers", [1, 4])
def test_a_corrupted_image_fails_the_export_with_its_frame(
    simulated: Simulated, media: Path, tmp_path: Path, readers: int
) -> None:
    key = max(simulated.expected)  # the last frame: the readers are busy by then
    path = media / _frame_of(key).image
    path.write_bytes(path.read_bytes()[:-1] + b"\0")  # same size, different bytes
    with pytest.raises(ExportError, match=f"frame {key}: stored image does not match"):
        dataset_export(out=tmp_path / "ds", options=ExportOptions(), readers=readers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]  # nothing half-written


def test_a_missing_image_names_its_frame(simulated: Simulated, media: Path, tmp_path: Path) -> None:
    key = min(simulated.expected)
    (media / _frame_of(key).image).unlink()
    with pytest.raises(ExportError, match=f"frame {key}: cannot read stored image"):
        dataset_export(out=tmp_path / "ds", options=ExportOptions(), readers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]


def test_a_frame_without_a_stored_digest_fails_the_export_with_it(
    simulated: Simulated, tmp_path: Path
) -> None:
    key = max(simulated.expected)
    Frame.objects.filter(pk=_frame_of(key).pk).update(image_sha256="")
    with pytest.raises(ExportError, match=f"frame {key} has no stored sha256"):
        dataset_export(out=tmp_path / "ds", options=ExportOptions(), readers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]  # nothing half-written


def test_bad_reader_count_is_refused(simulated: Simulated, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="readers must be at least 1"):
        dataset_export(out=tmp_path / "ds", options=ExportOptions(), readers=0)
    assert not (tmp_path / "ds").exists()


@pytest.mark.django_db(transaction=True)
def test_an_export_job_on_a_real_worker_writes_the_same_files(
    simulated: Simulated, celery_workers: Any, settings: Any, tmp_path: Path
) -> None:
    settings.HILAPP_EXPORT_DIR = str(tmp_path / "exports")
    celery_workers.env["HILAPP_EXPORT_READERS"] = "4"
    celery_workers.start(concurrency=1)  # a prefork child: daemonic
    job = export_job_start(params={"formats": ["webdataset"], "shard_max_bytes": 40960})

    def finished() -> bool:
        return ExportJob.objects.get(pk=job.pk).status in (ExportStatus.DONE, ExportStatus.FAILED)

    wait_until(finished, timeout=120, message=f"export job {job.pk}\n{celery_workers.logs()}")
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE, job.error
    reference = _export_to(
        tmp_path / "inline",
        ExportOptions(formats=("webdataset",), shard_max_bytes=40960),
        readers=1,
    )
    assert _files(Path(job.out_dir)) == _files(reference)


def test_a_parquet_only_export_leaves_the_images_unread(
    simulated: Simulated, media: Path, tmp_path: Path
) -> None:
    key = max(simulated.expected)
    path = media / _frame_of(key).image
    size = path.stat().st_size
    path.write_bytes(b"\0" * size)  # no image leaves, so none is read (or checked)
    dataset_export(out=tmp_path / "p", options=ExportOptions(formats=("parquet",)), readers=2)
    with pytest.raises(ExportError, match=f"frame {key}: stored image does not match"):
        dataset_export(out=tmp_path / "w", options=ExportOptions(formats=("webdataset",)))
