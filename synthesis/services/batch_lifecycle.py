"""A batch's lifecycle: launch, pause, resume (with the requeue of waiting work) and cancel.

It sits on top of the phase services (it launches through them) and of the work-unit registry
(it resends and cancels units through it); nothing below imports it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from synthesis.models import Batch, ModelCall
from synthesis.services.characters import batch_launch_characters
from synthesis.services.frame_runs import batch_launch_frames
from synthesis.services.launch_params import LaunchError, clean_budget, clean_launch_request
from synthesis.services.progress import batch_work_units
from synthesis.services.stories import batch_launch_stories
from synthesis.states import BatchKind, BatchStatus, CallStatus
from synthesis.transitions import transition
from synthesis.work_units import units_owned_by

LAUNCHERS = {
    BatchKind.CHARACTERS: batch_launch_characters,
    BatchKind.STORIES: batch_launch_stories,
    BatchKind.FRAMES: batch_launch_frames,
}


def batch_launch(
    *,
    kind: str,
    count: Any,
    seed: Any = 0,
    budget_usd: Any = None,
    params: dict[str, Any] | None = None,
    created_by: Any = None,
) -> Batch:
    """Launch a batch of ``kind`` (characters, stories, frames) through its phase's launcher.

    Every launcher validates everything before it creates anything, in one transaction, so a
    ``LaunchError`` means nothing was created.
    """
    # Every door (API, page, CLI) comes through here: check everything, per kind, first.
    common: dict[str, Any] = clean_launch_request(
        kind=kind, count=count, seed=seed, budget_usd=budget_usd, params=params
    )
    launcher = LAUNCHERS.get(common.pop("kind"))
    if launcher is None:
        raise LaunchError(f"kind must be one of {list(BatchKind.values)}, not {kind!r}")
    return launcher(created_by=created_by, **common)


class BatchActionError(ValueError):
    """The batch is not in a state that allows the action (e.g. resuming a cancelled batch)."""


def _act(
    batch_id: int, *, old: tuple[str, ...], new: str, reason: str, actor: str, **updates: Any
) -> tuple[Batch, str]:
    """Move the batch to ``new`` from one of ``old``; returns it and the status it left."""
    batch = Batch.objects.get(pk=batch_id)
    left = batch.status
    if left not in old or not transition(
        Batch, batch.pk, old=left, new=new, reason=reason, actor=actor, **updates
    ):
        raise BatchActionError(f"batch {batch_id} is {batch.status}; it cannot become {new}")
    batch.refresh_from_db()
    return batch, left


def _actor(actor: Any) -> str:
    return str(getattr(actor, "username", None) or actor or "system")[:64]


def batch_pause(*, batch_id: int, actor: Any) -> Batch:
    """No new unit starts while paused; steps in flight finish. Resume picks the rest up."""
    who = _actor(actor)
    batch, _ = _act(
        batch_id,
        old=(BatchStatus.RUNNING,),
        new=BatchStatus.PAUSED,
        reason=f"paused by {who}",
        actor=who,
        note=f"paused by {who}",
    )
    return batch


def batch_resume(*, batch_id: int, actor: Any, budget_usd: Any = None) -> Batch:
    """Run again (optionally with a new budget) and re-enqueue the work that waited."""
    who = _actor(actor)
    updates: dict[str, Any] = {"note": ""}
    if budget_usd not in (None, ""):
        updates["budget_usd"] = clean_budget(budget_usd)
    with transaction.atomic():
        batch, _ = _act(
            batch_id,
            old=(BatchStatus.PAUSED,),
            new=BatchStatus.RUNNING,
            reason=f"resumed by {who}",
            actor=who,
            **updates,
        )
        batch_requeue_waiting(batch)
    return batch


def batch_requeue_waiting(batch: Batch) -> int:
    """Send again every unit ``batch`` owns that waits in a working state (the reconciler's
    work, for one batch and without waiting for leases). Units with a model call in flight are
    left to the worker that holds them; a gate step sent twice is harmless (attempts are
    claimed)."""
    busy = set(
        ModelCall.objects.filter(batch=batch, status=CallStatus.STARTED).values_list(
            "subject", flat=True
        )
    )
    sent = 0
    for unit in batch_work_units(batch):
        pks = (
            units_owned_by(unit, batch)
            .filter(unit.in_states(unit.working))
            .values_list("pk", flat=True)
        )
        for pk in pks:
            if f"{unit.model.__name__.lower()}:{pk}" in busy:
                continue
            unit.resend(pk)
            sent += 1
    return sent


def batch_cancel(*, batch_id: int, actor: Any) -> Batch:
    """Cancel: no new unit starts; steps in flight finish; nothing already made is lost.

    Units that have not started are cancelled by the worker that picks up their message (it
    sees the cancelled batch before calling any model), so a unit a worker already holds is
    never cancelled under it. Units whose message is long gone (lease expired) are cancelled
    here, as ``batches_cancel_stale_units`` does for the reconciler. Phase III units have no
    cancelled state: they stay where they stopped, and nothing sends them again.
    """
    who = _actor(actor)
    batch, left = _act(
        batch_id,
        old=(BatchStatus.RUNNING, BatchStatus.PAUSED),
        new=BatchStatus.CANCELLED,
        reason=f"cancelled by {who}",
        actor=who,
        note=f"cancelled by {who}",
    )
    # A paused batch's waiting units have no message on the way (the workers dropped them):
    # cancel them all now. A running batch's are cancelled by the workers as they arrive.
    batch_cancel_stale_units(batch, stale_only=left != BatchStatus.PAUSED)
    return batch


def batch_cancel_stale_units(batch: Batch, *, stale_only: bool = True) -> int:
    """Cancel the not-started units of a cancelled ``batch`` that no worker holds."""
    if batch.status != BatchStatus.CANCELLED:
        return 0
    started_subjects = set(ModelCall.objects.filter(batch=batch).values_list("subject", flat=True))
    now = timezone.now()
    cancelled = 0
    for unit in batch_work_units(batch):
        if unit.not_started is None or unit.cancelled is None:
            continue
        units = units_owned_by(unit, batch).filter(**{unit.status_field: unit.not_started})
        if stale_only:
            units = units.filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        for pk in units.values_list("pk", flat=True):
            if f"{unit.model.__name__.lower()}:{pk}" in started_subjects:
                continue  # it called a model already: a worker holds it and will finish it
            cancelled += transition(
                unit.model,
                pk,
                old=unit.not_started,
                new=unit.cancelled,
                reason="batch cancelled before it started",
                actor="cancel",
            )
    return cancelled


def batches_cancel_stale_units() -> int:
    """For the reconciler: cancel not-started units of cancelled batches whose message is lost."""
    return sum(
        batch_cancel_stale_units(batch)
        for batch in Batch.objects.filter(status=BatchStatus.CANCELLED)
    )
