"""A worker runs the next step of its own queue in the same task (``dispatch.handing_on``).

The unit tests drive ``synthesis.tasks._run`` as a worker would call it, with the broker
replaced by a list of published steps; the worker test runs real characters through a real
worker and reads its log: no gate message is ever received, because each character's gate ran
in the task that drafted it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hilapp.media import StorageUnavailable
from synthesis import dispatch, tasks
from synthesis.providers.base import ErrorKind, ProviderError
from synthesis.services.characters import batch_launch_characters
from synthesis.states import CharacterStatus
from tests.conftest import Workers, wait_until

STEP = "synthesis.tasks.test_step"


def _worker_task(queue: str) -> Any:
    """What ``_run`` reads of a Celery task taken from ``queue`` by a worker."""
    return SimpleNamespace(
        request=SimpleNamespace(is_eager=False, delivery_info={"routing_key": queue})
    )


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dispatch.Step]:
    sent: list[dispatch.Step] = []
    monkeypatch.setattr(dispatch.Step, "publish", lambda step: sent.append(step))
    return sent


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """A step that records its arguments and sends what ``sends`` says for it."""
    log: list[tuple[object, ...]] = []

    def step(n: int, *sends: tuple[str, int]) -> None:
        log.append((n, *sends))
        for queue, m in sends:
            dispatch.send_on_commit(STEP, [m], queue=queue)

    monkeypatch.setitem(tasks.STEPS, STEP, step)
    return log


@pytest.mark.django_db(transaction=True)  # on_commit runs at once, as in a worker
def test_the_first_step_sent_to_the_own_queue_runs_in_the_same_task(
    ran: list[tuple[object, ...]], published: list[dispatch.Step]
) -> None:
    # Step 1 sends 2 to its own queue, 3 to its own queue and 4 to another: 2 runs here, 3 and 4
    # go to the broker (work that can run in parallel still spreads over the workers).
    tasks._run(_worker_task("celery"), STEP, (1, ("celery", 2), ("celery", 3), ("api", 4)))

    assert [entry[0] for entry in ran] == [1, 2]
    assert [(step.args, step.queue) for step in published] == [((3,), "celery"), ((4,), "api")]


@pytest.mark.django_db(transaction=True)  # on_commit runs at once, as in a worker
def test_a_chain_stops_after_chain_max_steps_and_publishes_the_rest(
    monkeypatch: pytest.MonkeyPatch, published: list[dispatch.Step]
) -> None:
    ran: list[int] = []

    def step(n: int) -> None:  # every step hands on the next, forever
        ran.append(n)
        dispatch.send_on_commit(STEP, [n + 1], queue="celery")

    monkeypatch.setitem(tasks.STEPS, STEP, step)
    tasks._run(_worker_task("celery"), STEP, (1,))

    assert ran == list(range(1, tasks.CHAIN_MAX + 1))
    assert [step.args for step in published] == [(tasks.CHAIN_MAX + 1,)]


@pytest.mark.django_db(transaction=True)  # on_commit runs at once, as in a worker
def test_a_step_kept_by_a_step_that_then_fails_is_still_published(
    monkeypatch: pytest.MonkeyPatch, published: list[dispatch.Step]
) -> None:
    def sends_then_fails() -> None:
        dispatch.send_on_commit(STEP, [7], queue="celery")
        raise RuntimeError("after the send")

    monkeypatch.setitem(tasks.STEPS, "synthesis.tasks.first", sends_then_fails)
    with pytest.raises(RuntimeError):
        tasks._run(_worker_task("celery"), "synthesis.tasks.first", ())

    assert [step.args for step in published] == [(7,)]


@pytest.mark.django_db(transaction=True)  # on_commit runs at once, as in a worker
def test_nothing_is_kept_while_no_step_runs(published: list[dispatch.Step]) -> None:
    dispatch.send_on_commit(STEP, [1], queue="celery")  # e.g. a launch from the web process

    assert [step.args for step in published] == [(1,)]


@pytest.mark.worker
def test_a_characters_gate_runs_in_the_task_that_drafted_it(celery_workers: Workers) -> None:
    celery_workers.env.update(HILAPP_TEMPLATE_SIZE="128")
    celery_workers.start(concurrency=1)
    batch = batch_launch_characters(count=6, seed=3)
    resting = {CharacterStatus.PENDING_HV1, CharacterStatus.DISCARDED}

    wait_until(
        lambda: batch.characters.filter(status__in=resting).count() == 6,
        timeout=120,
        message="6 characters to reach HV1 or discard",
    )

    received = [line for line in celery_workers.logs(tail=0).splitlines() if "received" in line]
    assert sum("character_draft" in line for line in received) == 6, received
    assert not [line for line in received if "gate_advance" in line], received
    assert all(c.attempts.count() == 1 for c in batch.characters.all())


@pytest.mark.parametrize(
    ("failure", "sent_again"),
    [
        # anything else: its own message handles it, and the first step is not retried for it
        (RuntimeError("provider SDK bug"), True),
        # sending it again at once would pay for a render again: as gate_advance does for a
        # message, it waits for its lease to run out (it was noted as sent when handed on)
        (StorageUnavailable("the media bucket could not be reached"), False),
        # the batch is paused; resuming it sends the work again
        (ProviderError("budget reached", kind=ErrorKind.BUDGET), False),
    ],
    ids=["other", "bucket", "budget"],
)
@pytest.mark.django_db(transaction=True)  # on_commit runs at once, as in a worker
def test_a_handed_on_step_that_fails_is_sent_as_a_message_unless_a_message_would_not_be(
    monkeypatch: pytest.MonkeyPatch,
    published: list[dispatch.Step],
    failure: Exception,
    sent_again: bool,
) -> None:
    def first() -> None:
        dispatch.send_on_commit(STEP, ["boom"], queue="celery")

    def failing(_: str) -> None:
        raise failure

    monkeypatch.setitem(tasks.STEPS, "synthesis.tasks.first", first)
    monkeypatch.setitem(tasks.STEPS, STEP, failing)
    tasks._run(_worker_task("celery"), "synthesis.tasks.first", ())  # does not raise

    expected = [(STEP, ("boom",))] if sent_again else []
    assert [(step.task, step.args) for step in published] == expected
