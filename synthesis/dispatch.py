"""Enqueue pipeline steps — only after the transaction that made them due has committed.

A message only says "look at object N" (and the queue it was sent to, so that the worker knows
where it runs); before it is sent, the object's lease is set, and where and when it was sent is
noted, so the reconciler leaves it alone while the message is on its way or still waiting in its
queue. If the message is lost, the lease runs out and the reconciler sends it again.

This module only sends. Which queue a step belongs to is decided by the service that knows the
step's next model call (``synthesis.providers.calls.queue_of``): ``gate.gate_send``,
``characters.characters_send_draft``, ``stories.stories_send_script``. Steps without a model
call go to the default queue.

A worker keeps the next step of its own queue (``handing_on``): while a task runs a step taken
from queue Q, the first step it sends to Q is handed back to that task, which runs it once the
step that sent it is done, instead of publishing a message that the same kind of worker would
take. A chain (draft → render → judge, reference approved → frame starts) then costs no broker
round trip, acknowledgement or task start per link. Everything else about sending is unchanged:
the unit's lease and ``sent_at`` are noted first, so a worker that dies before running the step
leaves it to the reconciler, exactly like a lost message. Further steps (a frame's second
reference) are published, so work that can run in parallel still spreads over the workers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from synthesis.models import Character, Frame, FrameCharacter, Story
from synthesis.providers.queues import DEFAULT_QUEUE
from synthesis.queue_backlog import sent_at_headers
from synthesis.states import AttemptKind

# Tasks are named, not imported: ``synthesis.tasks`` imports the services, and the services
# send their next steps through this module, so importing the tasks here would close a circle.
# ``tests/synthesis/test_pipeline_doc.py`` checks that every name is a registered task.
GATE_TASK = "synthesis.tasks.gate_advance"
DRAFT_TASK = "synthesis.tasks.character_draft"
STORY_SCRIPT_TASK = "synthesis.tasks.story_script"
FRAME_REFERENCES_TASK = "synthesis.tasks.frame_references"
STORY_CHECK_TASK = "synthesis.tasks.story_check"


def lease_deadline() -> timedelta:
    return timedelta(seconds=settings.HILAPP_LEASE_S)


def touch_lease(model: type[models.Model], pks: list[int], *, queue: str) -> datetime:
    """Lease the units and note where and when their step is sent; the message carries the
    same time (``queue_backlog``), so the reconciler can tell whether it is still in line."""
    now = timezone.now()
    model._default_manager.filter(pk__in=pks).update(
        lease_until=now + lease_deadline(), sent_to=queue, sent_at=now
    )
    return now


@dataclass(frozen=True)
class Step:
    """A message's content: the task's name, its arguments, its queue and headers."""

    task: str
    args: tuple[object, ...]
    queue: str
    headers: dict[str, str] = field(default_factory=dict)

    def publish(self) -> None:
        # Resolved by name (no import of synthesis.tasks here); apply_async honours eager mode.
        current_app.tasks[self.task].apply_async(
            args=self.args, queue=self.queue, headers=self.headers
        )


class HandedOn(threading.local):
    """The step kept for the running task (one per thread: the api worker runs tasks in
    threads, the default worker one per process)."""

    queue: str | None = None
    step: Step | None = None

    def take(self) -> Step | None:
        step, self.step = self.step, None
        return step


_handed_on = HandedOn()


@contextmanager
def handing_on(queue: str) -> Iterator[HandedOn]:
    """While a worker runs a step from ``queue``: keep the first step sent to ``queue`` for it
    (``take``) instead of publishing it. On leaving, a step not taken is published."""
    _handed_on.queue, _handed_on.step = queue, None
    try:
        yield _handed_on
    finally:
        left = _handed_on.take()
        _handed_on.queue = None
        if left is not None:
            left.publish()


def _send(step: Step) -> None:
    if _handed_on.queue == step.queue and _handed_on.step is None:
        _handed_on.step = step
    else:
        step.publish()


def send_on_commit(
    task: str, args: list[object], *, queue: str = DEFAULT_QUEUE, sent_at: datetime | None = None
) -> None:
    headers = sent_at_headers(sent_at) if sent_at is not None else {}
    step = Step(task, tuple(args), queue, headers)
    transaction.on_commit(lambda: _send(step))


def send_step(task: str, args: list[object], *, queue: str, sent_at: datetime) -> None:
    """Send a pipeline step that makes a model call; the task learns its queue from the last
    argument (a worker forwards the step if it belongs elsewhere)."""
    send_on_commit(task, [*args, queue], queue=queue, sent_at=sent_at)


def subject_model(kind: AttemptKind) -> type[models.Model]:
    return {
        AttemptKind.CHARACTER: Character,
        AttemptKind.REFERENCE: FrameCharacter,
        AttemptKind.FRAME: Frame,
    }[kind]


def gate(kind: AttemptKind, subject_id: int, *, queue: str) -> None:
    """Send a gate subject's next step to ``queue`` (``gate.gate_send`` picks the queue)."""
    sent_at = touch_lease(subject_model(kind), [subject_id], queue=queue)
    send_step(GATE_TASK, [kind.value, subject_id], queue=queue, sent_at=sent_at)


def character_draft(character_id: int, *, queue: str) -> None:
    sent_at = touch_lease(Character, [character_id], queue=queue)
    send_step(DRAFT_TASK, [character_id], queue=queue, sent_at=sent_at)


def story_script(story_id: int, *, queue: str) -> None:
    sent_at = touch_lease(Story, [story_id], queue=queue)
    send_step(STORY_SCRIPT_TASK, [story_id], queue=queue, sent_at=sent_at)


def frame_references(frame_ids: list[int]) -> None:
    """Start a frame's pending references, or move it on once they are all approved."""
    sent_at = touch_lease(Frame, frame_ids, queue=DEFAULT_QUEUE)
    for pk in frame_ids:
        send_on_commit(FRAME_REFERENCES_TASK, [pk], sent_at=sent_at)


def story_check(story_id: int) -> None:
    """Is every frame of the story approved or discarded? (runs after the commit that may say so)"""
    sent_at = touch_lease(Story, [story_id], queue=DEFAULT_QUEUE)
    send_on_commit(STORY_CHECK_TASK, [story_id], sent_at=sent_at)
