"""Exports written by writer processes: the same bytes whatever their number; a bad image or a
dead writer fails the export with the reason and publishes nothing; a Celery worker's prefork
child (a daemonic process) can start them, and fork planners."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from synthesis.export import frame_writers
from synthesis.export.jobs import export_job_start
from synthesis.export.options import ExportError, ExportOptions
from synthesis.export.service import dataset_export
from synthesis.models import ExportJob, Frame
from synthesis.states import ExportStatus
from tests.conftest import wait_until
from tests.export.conftest import Simulated

SMALL_SHARDS = ExportOptions(shard_max_bytes=40960)  # several shards, several batches each


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_same_bytes_with_any_number_of_writers(
    simulated: Simulated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frame_writers, "BATCH", 2)  # batches of one shard go to several writers
    exports = {
        workers: _files(_export_to(tmp_path / f"w{workers}", SMALL_SHARDS, workers=workers))
        for workers in (0, 1, 3)
    }
    inline = exports[0]
    assert sum(name.startswith("webdataset/train/frames-") for name in inline) > 2
    for workers in (1, 3):
        assert exports[workers].keys() == inline.keys()
        differ = [name for name in inline if exports[workers][name] != inline[name]]
        assert differ == [], f"{workers} writers changed {differ}"


def _frame_of(key: str) -> Frame:
    story, index = key.split("_")
    return Frame.objects.get(story_id=int(story[1:]), index=int(index[1:]))


def _export_to(out: Path, options: ExportOptions, *, workers: int) -> Path:
    dataset_export(out=out, options=options, workers=workers)
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupted_image_fails_the_export_with_its_frame(
    simulated: Simulated, media: Path, tmp_path: Path, workers: int
) -> None:
    key = max(simulated.expected)  # the last frame: the writers are busy by then
    path = media / _frame_of(key).image
    path.write_bytes(path.read_bytes()[:-1] + b"\0")  # same size, different bytes
    with pytest.raises(ExportError, match=f"frame {key}: stored image does not match"):
        dataset_export(out=tmp_path / "ds", options=ExportOptions(), workers=workers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]  # nothing half-written


def test_a_missing_image_names_its_frame(simulated: Simulated, media: Path, tmp_path: Path) -> None:
    (media / _frame_of(min(simulated.expected)).image).unlink()
    with pytest.raises(ExportError, match="cannot read stored image"):
        dataset_export(out=tmp_path / "ds", options=ExportOptions(), workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]


def test_a_killed_writer_fails_the_export(
    simulated: Simulated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frame_writers, "BATCH", 2)
    send = frame_writers._Pool.send

    def kill_first_then_send(pool: Any, message: Any) -> Any:
        victim = pool.processes[0]
        if victim.poll() is None:
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
        return send(pool, message)

    monkeypatch.setattr(frame_writers._Pool, "send", kill_first_then_send)
    with pytest.raises(RuntimeError, match=r"export writer process 0 died \(exit code -9\)"):
        dataset_export(out=tmp_path / "ds", options=SMALL_SHARDS, workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]


def test_bad_worker_count_is_refused(simulated: Simulated, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="workers must be 0 or more"):
        dataset_export(out=tmp_path / "ds", options=ExportOptions(), workers=-1)
    assert not (tmp_path / "ds").exists()


@pytest.mark.django_db(transaction=True)
def test_an_export_job_on_a_real_worker_uses_writer_and_planner_processes(
    simulated: Simulated, celery_workers: Any, settings: Any, tmp_path: Path
) -> None:
    settings.HILAPP_EXPORT_DIR = str(tmp_path / "exports")
    celery_workers.env["HILAPP_EXPORT_WORKERS"] = "2"
    celery_workers.env["HILAPP_EXPORT_PLANNERS"] = "2"
    celery_workers.start(concurrency=1)  # a prefork child: daemonic
    job = export_job_start(params={"formats": ["webdataset"], "shard_max_bytes": 40960})

    def finished() -> bool:
        return ExportJob.objects.get(pk=job.pk).status in (ExportStatus.DONE, ExportStatus.FAILED)

    wait_until(finished, timeout=120, message=f"export job {job.pk}\n{celery_workers.logs()}")
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE, job.error
    assert "export: 2 planner processes" in celery_workers.logs()
    reference = _export_to(
        tmp_path / "inline",
        ExportOptions(formats=("webdataset",), shard_max_bytes=40960),
        workers=0,
    )
    assert _files(Path(job.out_dir)) == _files(reference)


def test_a_parquet_only_export_leaves_the_images_unread(
    simulated: Simulated, media: Path, tmp_path: Path
) -> None:
    key = max(simulated.expected)
    path = media / _frame_of(key).image
    size = path.stat().st_size
    path.write_bytes(b"\0" * size)  # no image leaves, so none is read (or checked)
    dataset_export(out=tmp_path / "p", options=ExportOptions(formats=("parquet",)), workers=2)
    with pytest.raises(ExportError, match=f"frame {key}: stored image does not match"):
        dataset_export(out=tmp_path / "w", options=ExportOptions(formats=("webdataset",)))
