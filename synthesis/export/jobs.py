"""Export jobs: started from the API (or the admin), run by a Celery worker.

The job's folder is chosen by the server (``HILAPP_EXPORT_DIR``/``export-<id>``), never by the
caller. Progress is written to the job row at most every ``PROGRESS_SECONDS``.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from synthesis.dispatch import send_on_commit
from synthesis.export.downloads import export_publish, storage_is_shared
from synthesis.export.options import ExportError, options_from_params
from synthesis.export.service import dataset_export
from synthesis.export.splits import SPLITS
from synthesis.models import ExportJob
from synthesis.states import ExportStatus
from synthesis.transitions import transition

log = logging.getLogger(__name__)

EXPORT_TASK = "synthesis.tasks.export_run"
PROGRESS_SECONDS = 1.0


def exports_root() -> Path:
    return Path(settings.HILAPP_EXPORT_DIR or settings.VAR_DIR / "exports")


def export_job_start(*, params: dict[str, Any], user: Any | None = None) -> ExportJob:
    """Validate the parameters (ExportError if bad), create the job and enqueue it on commit."""
    options = options_from_params(params)
    root = exports_root()
    root.mkdir(parents=True, exist_ok=True)
    with transaction.atomic():
        job = ExportJob.objects.create(params=options.as_params(), out_dir="", created_by=user)
        job.out_dir = str(root / f"export-{job.pk}")
        job.save(update_fields=["out_dir"])
        send_on_commit(EXPORT_TASK, [job.pk])
    return job


def export_job_run(*, job_id: int) -> None:
    """Run a queued job to done or failed. A job another worker already claimed is left alone."""
    job = ExportJob.objects.get(pk=job_id)
    if not transition(
        ExportJob,
        job.pk,
        old=ExportStatus.QUEUED,
        new=ExportStatus.RUNNING,
        reason="worker picked it up",
        updated_at=timezone.now(),  # the heartbeat the reconciler watches
    ):
        log.info("export %s is %s already; nothing to do", job.pk, job.status)
        return
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_SECONDS or done == total:
            last = now
            ExportJob.objects.filter(pk=job.pk).update(
                done=done, total=total, updated_at=timezone.now()
            )

    try:
        Path(job.out_dir).parent.mkdir(parents=True, exist_ok=True)
        manifest = dataset_export(
            out=Path(job.out_dir), options=options_from_params(job.params), progress=progress
        )
    except Exception as exc:
        expected = isinstance(exc, ExportError)  # bad data or parameters: said as it is
        error = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        transition(
            ExportJob,
            job.pk,
            old=ExportStatus.RUNNING,
            new=ExportStatus.FAILED,
            reason=error if expected else "crashed",
            error=error,
            finished_at=timezone.now(),
        )
        if expected:
            return
        raise
    published = None
    if storage_is_shared():
        published = export_publish(Path(job.out_dir), f"exports/export-{job.pk}")
    transition(
        ExportJob,
        job.pk,
        old=ExportStatus.RUNNING,
        new=ExportStatus.DONE,
        reason="exported",
        # The job keeps the manifest but its file list (that stays in manifest.json).
        manifest={k: v for k, v in manifest.items() if k != "files"}
        | {"file_count": len(manifest["files"]), "published": published},
        done=manifest["counts"]["frames"],
        total=manifest["counts"]["frames"],
        finished_at=timezone.now(),
    )


def export_jobs_requeue_stalled(*, stalled_after_s: float) -> int:
    """For the reconciler: a running job without progress for a while lost its worker; queue
    it again (its partial folder is discarded by the next run)."""
    cutoff = timezone.now() - timedelta(seconds=stalled_after_s)
    requeued = 0
    stalled = ExportJob.objects.filter(status=ExportStatus.RUNNING, updated_at__lt=cutoff)
    for pk in stalled.values_list("pk", flat=True):
        with transaction.atomic():
            if transition(
                ExportJob,
                pk,
                old=ExportStatus.RUNNING,
                new=ExportStatus.QUEUED,
                reason=f"no progress for {stalled_after_s:.0f}s: its worker stopped",
            ):
                send_on_commit(EXPORT_TASK, [pk])
                requeued += 1
    return requeued


def export_latest_splits() -> dict[int, str]:
    """Story id → split in the latest finished export (empty when nothing was exported)."""
    job = ExportJob.objects.filter(status=ExportStatus.DONE).order_by("-id").first()
    story_ids = ((job.manifest or {}).get("splits") or {}).get("story_ids") if job else None
    if not story_ids:
        return {}
    return {sid: split for split in SPLITS for sid in story_ids.get(split, [])}
