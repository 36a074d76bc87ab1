"""A unit whose message still waits in its queue is behind a backlog, not lost: the reconciler
does not send it again when its lease runs out, and does once its queue has moved past it.

These run on the configured broker: the filesystem broker on the embedded defaults, Redis on
PostgreSQL + Redis (CI runs both). No worker runs, so the messages stay where they were sent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from hilapp.celery import app
from synthesis.models import Character
from synthesis.providers.queues import DEFAULT_QUEUE, PIPELINE_QUEUES
from synthesis.queue_backlog import oldest_waiting
from synthesis.services.batch_lifecycle import batch_launch
from synthesis.services.reconcile import reconcile_stuck_work
from synthesis.states import BatchKind, CharacterStatus
from tests.factories import CharacterFactory

pytestmark = pytest.mark.django_db

TEST_QUEUE = "hilapp-test-backlog"
FAST = {"sim": {"faults": {}, "latency_ms": 0}}


def _purge(*queues: str) -> None:
    with app.connection_for_write() as conn:
        for queue in queues:
            with contextlib.suppress(Exception):  # a queue never declared has nothing to purge
                conn.default_channel.queue_purge(queue)


def _waiting(queue: str) -> int:
    with app.connection_for_read() as conn:
        return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)


def _take_one(queue: str) -> None:
    """A worker takes the oldest message of ``queue``."""
    with app.connection_for_write() as conn:
        assert conn.default_channel.basic_get(queue, no_ack=True) is not None


def _send(queue: str) -> None:
    app.send_task("synthesis.tasks.story_check", args=[0], queue=queue)


@pytest.fixture(autouse=True)
def empty_queues() -> Iterator[None]:
    _purge(TEST_QUEUE, *PIPELINE_QUEUES)
    yield
    _purge(TEST_QUEUE, *PIPELINE_QUEUES)


def test_the_oldest_waiting_message_of_each_queue_says_when_it_was_sent() -> None:
    before = timezone.now()
    _send(TEST_QUEUE)
    between = timezone.now()
    time.sleep(0.05)
    _send(TEST_QUEUE)
    _send(TEST_QUEUE)

    first = oldest_waiting([TEST_QUEUE, "hilapp-test-empty"])
    assert set(first) == {TEST_QUEUE}  # an empty queue has no oldest message
    assert before <= first[TEST_QUEUE] <= between

    _take_one(TEST_QUEUE)
    assert oldest_waiting([TEST_QUEUE])[TEST_QUEUE] > between  # the line moved on
    _take_one(TEST_QUEUE)
    _take_one(TEST_QUEUE)
    assert oldest_waiting([TEST_QUEUE]) == {}


def test_a_unit_is_sent_again_only_once_its_queue_has_moved_past_it() -> None:
    _send("api")
    head = oldest_waiting(["api"])["api"]
    expired = timezone.now() - timedelta(seconds=1)
    drafting = {"status": CharacterStatus.DRAFTING, "lease_until": expired}
    # Sent to ``api`` before the message now at its head: a worker took it and then died.
    taken = CharacterFactory(**drafting, sent_to="api", sent_at=head - timedelta(seconds=60))
    # Sent to ``api`` after the head: still in line behind it.
    in_line = CharacterFactory(**drafting, sent_to="api", sent_at=head + timedelta(seconds=1))
    # Sent to ``gpu``, which holds nothing: lost.
    lost = CharacterFactory(**drafting, sent_to="gpu", sent_at=head + timedelta(seconds=1))

    counts = reconcile_stuck_work()

    assert counts["character_draft"] == 2, counts
    for character in (taken, lost):
        character.refresh_from_db()
        assert character.lease_until > timezone.now()
        assert character.sent_to == DEFAULT_QUEUE  # the simulator planner's queue
    in_line.refresh_from_db()
    assert (in_line.lease_until, in_line.sent_to) == (expired, "api")  # left alone

    _take_one("api")  # a worker took the head, and the unit's own message was not behind it
    assert reconcile_stuck_work()["character_draft"] == 1
    in_line.refresh_from_db()
    assert in_line.lease_until > timezone.now()


def test_a_batch_waiting_in_line_longer_than_its_lease_gets_no_duplicates(
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        batch = batch_launch(kind=BatchKind.CHARACTERS, count=20, params=FAST)
    assert _waiting(DEFAULT_QUEUE) == 20
    characters = Character.objects.filter(batch=batch)
    # As if the queue had held the batch longer than a lease.
    characters.update(lease_until=timezone.now() - timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=True):
        counts = reconcile_stuck_work()
    assert "character_draft" not in counts, counts
    assert _waiting(DEFAULT_QUEUE) == 20

    _purge(DEFAULT_QUEUE)  # the broker lost them (restarted without its data)
    with django_capture_on_commit_callbacks(execute=True):
        counts = reconcile_stuck_work()
    assert counts["character_draft"] == 20, counts
    assert _waiting(DEFAULT_QUEUE) == 20
    assert characters.filter(lease_until__gt=timezone.now()).count() == 20
