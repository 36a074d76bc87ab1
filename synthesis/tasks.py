"""Thin Celery tasks: load by id, call one service, own the retry policy.

Services are idempotent (guarded transitions): a task that finds its object already past the
step does nothing, so redelivery after a crash is harmless.

A pipeline task also runs the step its own step hands on to the same queue
(``dispatch.handing_on``), and the one that hands on, up to ``CHAIN_MAX`` steps per message.
A handed-on step that fails is published as an ordinary message, whose task then applies the
retry policy below, unless its failure is one no message is sent again for (``_stopped_for_now``);
the message that started the chain is not retried for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task, shared_task

from hilapp.media import StorageUnavailable
from synthesis import dispatch
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
# Steps one message may run: its own and those handed on after it. A character is 2 (draft,
# then its gate), a frame's chain about 5; the bound keeps one message from holding a worker
# for a whole story when every step stays on one queue.
CHAIN_MAX = 8


def _stopped_for_now(exc: Exception) -> bool:
    """Is ``exc`` a failure whose step is not sent again at once? Logs it if so.

    A budget stop: the batch is paused, and resuming it re-enqueues the work. An unreachable
    bucket: botocore has already retried (AWS_MAX_ATTEMPTS tries) and another try may pay for a
    render again; the reconciler sends the step again once its lease has run out.
    """
    if isinstance(exc, StorageUnavailable):
        log.warning("step left for the reconciler: %s", exc)
        return True
    if isinstance(exc, ProviderError) and exc.kind == ErrorKind.BUDGET:
        log.info("step stopped: %s", exc)
        return True
    return False


def _retry_transient(task: Task, exc: ProviderError) -> None:
    """Transient provider trouble outlived the call-level retries: try the step again later."""
    if _stopped_for_now(exc):
        return
    if task.request.retries >= RETRY_MAX:
        log.warning("giving up for now (the reconciler will resend): %s", exc)
        return
    raise task.retry(exc=exc, countdown=RETRY_BACKOFF_S * 2**task.request.retries)


# The steps, by task name: each takes the message's arguments and raises what it cannot handle.
def _draft(character_id: int, queue: str | None = None) -> None:
    characters.character_draft(character_id=character_id, here=queue)


def _gate(kind: str, subject_id: int, queue: str | None = None) -> None:
    # ``queue``: where this message was sent; steps that belong to another queue are sent on.
    gate_run(policy_for(AttemptKind(kind)), subject_id, here=queue)


def _script(story_id: int, queue: str | None = None) -> None:
    stories.story_script(story_id=story_id, here=queue)


def _references(frame_id: int) -> None:
    references.frame_references_advance(frame_id=frame_id)


def _story_check(story_id: int) -> None:
    stories.story_check_complete(story_id=story_id)


STEPS: dict[str, Callable[..., None]] = {
    dispatch.DRAFT_TASK: _draft,
    dispatch.GATE_TASK: _gate,
    dispatch.STORY_SCRIPT_TASK: _script,
    dispatch.FRAME_REFERENCES_TASK: _references,
    dispatch.STORY_CHECK_TASK: _story_check,
}


def _taken_from(task: Task) -> str | None:
    """The queue the running message was taken from (None when eager)."""
    if task.request.is_eager:
        return None
    return (task.request.delivery_info or {}).get("routing_key") or None


def _run(task: Task, name: str, args: tuple[object, ...]) -> None:
    """Run the message's step, then the steps handed on to its queue (not when eager: an
    eager step's sends already run inline)."""
    queue = _taken_from(task)
    if queue is None:
        STEPS[name](*args)
        return
    with dispatch.handing_on(queue) as handed_on:
        STEPS[name](*args)
        for _ in range(CHAIN_MAX - 1):
            step = handed_on.take()
            if step is None:
                return
            _run_handed_on(step)


def _run_handed_on(step: dispatch.Step) -> None:
    run = STEPS.get(step.task)
    if run is None:
        step.publish()
        return
    try:
        run(*step.args)
    except Exception as exc:  # whatever it was, its own message handles it (and its retries)
        if not _stopped_for_now(exc):
            log.warning("%s%s failed here (%r); sent as a message", step.task, list(step.args), exc)
            step.publish()


@shared_task(bind=True, name=dispatch.DRAFT_TASK)
def character_draft(self: Task, character_id: int, queue: str | None = None) -> None:
    try:
        _run(self, dispatch.DRAFT_TASK, (character_id, queue))
    except ProviderError as exc:
        _retry_transient(self, exc)


@shared_task(bind=True, name=dispatch.GATE_TASK)
def gate_advance(self: Task, kind: str, subject_id: int, queue: str | None = None) -> None:
    try:
        _run(self, dispatch.GATE_TASK, (kind, subject_id, queue))
    except ProviderError as exc:
        _retry_transient(self, exc)
    except StorageUnavailable as exc:
        _stopped_for_now(exc)


@shared_task(name="synthesis.tasks.reconcile")
def reconcile() -> dict[str, int]:
    return reconcile_stuck_work()


@shared_task(bind=True, name=dispatch.STORY_SCRIPT_TASK)
def story_script(self: Task, story_id: int, queue: str | None = None) -> None:
    try:
        _run(self, dispatch.STORY_SCRIPT_TASK, (story_id, queue))
    except ProviderError as exc:
        _retry_transient(self, exc)


@shared_task(bind=True, name=dispatch.FRAME_REFERENCES_TASK)
def frame_references(self: Task, frame_id: int) -> None:
    try:
        _run(self, dispatch.FRAME_REFERENCES_TASK, (frame_id,))
    except ProviderError as exc:
        _retry_transient(self, exc)


@shared_task(bind=True, name=dispatch.STORY_CHECK_TASK)
def story_check(self: Task, story_id: int) -> None:
    _run(self, dispatch.STORY_CHECK_TASK, (story_id,))


@shared_task(name="synthesis.tasks.export_run")
def export_run(job_id: int) -> None:
    """Run one dataset export job (no retries: a failed export is marked failed; start another)."""
    export_job_run(job_id=job_id)
