"""Bad arguments are refused before anything is written; a crash leaves nothing that looks done;
the command and the export job run the same service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from synthesis.export import service
from synthesis.export.jobs import export_job_start
from synthesis.export.options import ExportError, ExportOptions, options_from_params
from synthesis.models import ExportJob
from synthesis.states import ExportStatus
from synthesis.tasks import export_run
from tests.export.conftest import Simulated


def test_refuses_a_non_empty_unrelated_folder(simulated: Simulated, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    with pytest.raises(ExportError, match="not a previous export"):
        service.dataset_export(out=out, options=ExportOptions())
    assert (out / "thesis.tex").read_text() == "do not delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media", "mine"]


def test_replaces_a_previous_export(simulated: Simulated, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    service.dataset_export(out=out, options=ExportOptions(formats=("parquet",)))
    service.dataset_export(out=out, options=ExportOptions(formats=("webdataset",)))
    assert not (out / "index.parquet").exists()
    assert (out / "webdataset").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "media"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"formats": "webdataset,tfrecord"}, "Unknown format 'tfrecord'"),
        ({"formats": ""}, "at least one format"),
        ({"holdout_stories": 2}, "need held-out characters"),
        ({"shard_max_bytes": 100}, "at least"),
        ({"holdout_characters": "x"}, "integer"),
        ({"colour": "red"}, "Unknown parameter"),
    ],
)
def test_bad_parameters(params: dict, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        options_from_params(params)


def test_holdout_larger_than_available(simulated: Simulated, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="only 12"):
        service.dataset_export(out=tmp_path / "x", options=ExportOptions(holdout_characters=50))
    with pytest.raises(ExportError, match="stories can be held out"):
        service.dataset_export(
            out=tmp_path / "x", options=ExportOptions(holdout_characters=2, holdout_stories=9)
        )
    assert not (tmp_path / "x").exists()


def test_a_crash_leaves_no_folder_that_looks_complete(
    simulated: Simulated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(service, "_write_characters", boom)
    with pytest.raises(OSError, match="disk full"):
        service.dataset_export(out=tmp_path / "ds", options=ExportOptions())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]


def test_command_writes_the_dataset(simulated: Simulated, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmd"
    call_command(
        "export_dataset",
        "--out",
        str(out),
        "--format",
        "webdataset,parquet",
        "--holdout-characters",
        "4",
        "--holdout-stories",
        "4",
        "--shard-max-bytes",
        "40960",
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["formats"] == ["webdataset", "parquet"]
    assert manifest["counts"]["stories_heldout"] == 4
    assert not (out / "omnigen2").exists()
    assert "Exported" in capsys.readouterr().out


def test_command_reports_bad_arguments(simulated: Simulated, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="Unknown format"):
        call_command("export_dataset", "--out", str(tmp_path / "o"), "--format", "zip")
    with pytest.raises(CommandError, match="readers must be at least 1"):
        call_command("export_dataset", "--out", str(tmp_path / "o"), "--readers", "0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]


def test_export_job_runs_to_done(
    simulated: Simulated, settings, tmp_path: Path, django_capture_on_commit_callbacks, make_user
) -> None:
    settings.HILAPP_EXPORT_DIR = str(tmp_path / "exports")
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = export_job_start(params={"formats": ["parquet"]}, user=make_user("boss", "admin"))
    assert len(callbacks) == 1  # enqueued only after commit
    assert job.status == ExportStatus.QUEUED
    export_run(job.pk)  # the task body, with the real service
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE, job.error
    assert job.done == job.total == job.manifest["counts"]["frames"] > 0
    assert "files" not in job.manifest and job.manifest["file_count"] > 0
    assert (Path(job.out_dir) / "index.parquet").is_file()
    export_run(job.pk)  # a second delivery does nothing
    assert ExportJob.objects.get(pk=job.pk).status == ExportStatus.DONE


def test_export_job_that_cannot_run_fails_with_the_reason(
    simulated: Simulated, settings, tmp_path: Path
) -> None:
    settings.HILAPP_EXPORT_DIR = str(tmp_path / "exports")
    job = ExportJob.objects.create(
        params={"holdout_characters": 99}, out_dir=str(tmp_path / "exports" / "j")
    )
    export_run(job.pk)
    job.refresh_from_db()
    assert job.status == ExportStatus.FAILED
    assert "hold out 99 characters" in job.error
