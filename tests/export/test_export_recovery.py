"""An export whose worker died mid-run is queued again by the reconciler, and then completes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from django.utils import timezone

from synthesis.export.jobs import export_job_run, export_job_start, export_jobs_requeue_stalled
from synthesis.models import ExportJob, StatusChange
from synthesis.states import ExportStatus


def test_a_stalled_export_is_queued_again_and_finishes(
    simulated: Any, settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    settings.HILAPP_EXPORT_DIR = str(tmp_path / "exports")
    with django_capture_on_commit_callbacks():
        job = export_job_start(params={"formats": ["webdataset"]})
    # A worker took it and died: running, with its last heartbeat long ago.
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportStatus.RUNNING, updated_at=timezone.now() - timedelta(hours=1)
    )
    fresh = export_job_start(params={"formats": ["webdataset"]})
    ExportJob.objects.filter(pk=fresh.pk).update(
        status=ExportStatus.RUNNING, updated_at=timezone.now()
    )
    with django_capture_on_commit_callbacks() as sent:
        assert export_jobs_requeue_stalled(stalled_after_s=600) == 1
    assert len(sent) == 1  # the export task is sent again, once
    job.refresh_from_db()
    assert job.status == ExportStatus.QUEUED
    assert StatusChange.objects.filter(model="exportjob", object_id=job.pk, new="queued").exists()
    assert ExportJob.objects.get(pk=fresh.pk).status == ExportStatus.RUNNING  # still alive

    export_job_run(job_id=job.pk)  # what the resent message does
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE, job.error
    assert job.done == job.total > 0
    assert (Path(job.out_dir) / "manifest.json").exists()
