"""Export jobs: started from the API (or the admin), run by a Celery worker, in a folder that the
server chooses (``HILAPP_EXPORT_DIR``/``export-<id>``), never the caller."""

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
from synthesis.export.downloads import export_publish
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
    row = ExportJob.objects.filter(pk=job.pk)

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_SECONDS or done == total:
            last = now
            row.update(done=done, total=total, updated_at=timezone.now())

    def finish(new: str, reason: str, **updates: Any) -> None:
        updates["finished_at"] = timezone.now()
        transition(ExportJob, job.pk, old=ExportStatus.RUNNING, new=new, reason=reason, **updates)

    out = Path(job.out_dir)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        options = options_from_params(job.params)
        manifest = dataset_export(out=out, options=options, progress=progress)
    except Exception as exc:
        expected = isinstance(exc, ExportError)  # bad data or parameters: said as it is
        error = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        finish(ExportStatus.FAILED, error if expected else "crashed", error=error)
        if expected:
            return
        raise
    published = export_publish(out, f"exports/export-{job.pk}")
    # The job keeps the manifest but its file list (that stays in manifest.json).
    kept = {k: v for k, v in manifest.items() if k != "files"}
    kept |= {"file_count": len(manifest["files"]), "published": published}
    frames = manifest["counts"]["frames"]
    finish(ExportStatus.DONE, "exported", manifest=kept, done=frames, total=frames)


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
    return {sid: split for split in SPLITS for sid in (story_ids or {}).get(split, [])}
