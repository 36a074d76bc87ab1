"""Thin Celery tasks: load by id, call one service, own the retry policy.

Services are idempotent (guarded transitions): a task that finds its object already past the
step does nothing, so redelivery after a crash is harmless.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task

from hilapp.media import StorageUnavailable
from synthesis.export.jobs import export_job_run
from synthesis.gate import gate_run
from synthesis.gate_policies import policy_for
from synthesis.providers.base import ErrorKind, ProviderError
from synthesis.services import characters, references, stories
from synthesis.services.reconcile import reconcile_stuck_work
from synthesis.states import AttemptKind

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = 5
RETRY_MAX = 6


def _retry_transient(task: Task, exc: ProviderError) -> None:
    """Transient provider trouble outlived the call-level retries: try the step again later.

    A budget stop is not retried: the batch is paused, and resuming it re-enqueues the work.
    """
    if exc.kind == ErrorKind.BUDGET:
        log.info("step stopped: %s", exc)
        return
    if task.request.retries >= RETRY_MAX:
        log.warning("giving up for now (the reconciler will resend): %s", exc)
        return
    raise task.retry(exc=exc, countdown=RETRY_BACKOFF_S * 2**task.request.retries)


@shared_task(bind=True, name="synthesis.tasks.character_draft")
def character_draft(self: Task, character_id: int, queue: str | None = None) -> None:
    try:
        characters.character_draft(character_id=character_id, here=queue)
    except ProviderError as exc:
        _retry_transient(self, exc)


@shared_task(bind=True, name="synthesis.tasks.gate_advance")
def gate_advance(self: Task, kind: str, subject_id: int, queue: str | None = None) -> None:
    # ``queue``: where this message was sent; steps that belong to another queue are sent on.
    try:
        gate_run(policy_for(AttemptKind(kind)), subject_id, here=queue)
    except ProviderError as exc:
        _retry_transient(self, exc)
    except StorageUnavailable as exc:
        # Not retried here: each try may pay for a render again. botocore has already retried
        # (AWS_MAX_ATTEMPTS tries); the reconciler sends the step again once its lease has run out.
        log.warning("step left for the reconciler: %s", exc)


@shared_task(name="synthesis.tasks.reconcile")
def reconcile() -> dict[str, int]:
    return reconcile_stuck_work()


@shared_task(bind=True, name="synthesis.tasks.story_script")
def story_script(self: Task, story_id: int, queue: str | None = None) -> None:
    try:
        stories.story_script(story_id=story_id, here=queue)
    except ProviderError as exc:
        _retry_transient(self, exc)


@shared_task(bind=True, name="synthesis.tasks.frame_references")
def frame_references(self: Task, frame_id: int) -> None:
    try:
        references.frame_references_advance(frame_id=frame_id)
    except ProviderError as exc:
        _retry_transient(self, exc)


@shared_task(name="synthesis.tasks.story_check")
def story_check(story_id: int) -> None:
    stories.story_check_complete(story_id=story_id)


@shared_task(name="synthesis.tasks.export_run")
def export_run(job_id: int) -> None:
    """Run one dataset export job (no retries: a failed export is marked failed; start another)."""
    export_job_run(job_id=job_id)
