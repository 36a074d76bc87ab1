"""Batches: validation of launch parameters, and the checks steps make before new work."""

from __future__ import annotations

from typing import Any

from synthesis.models import Batch
from synthesis.services.launch_params import (
    MAX_BATCH_COUNT,
    LaunchError,
    clean_budget,
    clean_common_params,
    clean_count,
    clean_launch,
    clean_launch_request,
)
from synthesis.states import BatchStatus

__all__ = [
    "MAX_BATCH_COUNT",
    "LaunchError",
    "clean_budget",
    "clean_common_params",
    "clean_count",
    "clean_launch",
]


def batch_accepts_work(batch: Batch) -> bool:
    """New units of work start only in a running batch (paused: later; cancelled: never)."""
    return batch.status == BatchStatus.RUNNING


# --- launching, pausing, resuming and cancelling ------------------------------------------------


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
    from synthesis.states import BatchKind

    # Every door (API, page, CLI) comes through here: check everything, per kind, first.
    common: dict[str, Any] = clean_launch_request(
        kind=kind, count=count, seed=seed, budget_usd=budget_usd, params=params
    )
    kind = common.pop("kind")
    if kind == BatchKind.CHARACTERS:
        from synthesis.services.characters import batch_launch_characters

        return batch_launch_characters(created_by=created_by, **common)
    if kind == BatchKind.STORIES:
        launcher = _launcher("synthesis.services.stories", "batch_launch_stories")
    elif kind == BatchKind.FRAMES:
        launcher = _launcher("synthesis.services.frame_runs", "batch_launch_frames")
    else:
        raise LaunchError(f"kind must be one of {list(BatchKind.values)}, not {kind!r}")
    batch: Batch = launcher(**common)
    if created_by is not None and batch.created_by_id is None:
        Batch.objects.filter(pk=batch.pk).update(created_by=created_by)
        batch.created_by = created_by
    return batch


def _launcher(module: str, name: str) -> Any:
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise LaunchError(f"{name} is not available in this version of hilapp") from None


class BatchActionError(ValueError):
    """The batch is not in a state that allows the action (e.g. resuming a cancelled batch)."""


def _act(
    batch_id: int, *, old: tuple[str, ...], new: str, reason: str, actor: str, **updates: Any
) -> tuple[Batch, str]:
    """Move the batch to ``new`` from one of ``old``; returns it and the status it left."""
    from synthesis.transitions import transition

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
    from django.db import transaction

    who = _actor(actor)
    updates: dict[str, Any] = {"note": ""}
    if budget_usd not in (None, ""):
        budget = clean_budget(budget_usd)
        updates["budget_usd"] = budget
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
    """Send again every unit of ``batch`` waiting in a working state (the reconciler's rules,
    for one batch and without waiting for leases). Units with a model call in flight are left
    to the worker that holds them; a gate step sent twice is harmless (attempts are claimed)."""
    from synthesis.models import ModelCall
    from synthesis.services.reconcile import STUCK_RULES
    from synthesis.states import CallStatus

    busy = set(
        ModelCall.objects.filter(batch=batch, status=CallStatus.STARTED).values_list(
            "subject", flat=True
        )
    )
    sent = 0
    for rule in STUCK_RULES:
        pks = (
            rule.model._default_manager.filter(**{f"{rule.status_field}__in": rule.statuses})
            .filter(**{rule.batch_path: batch})
            .values_list("pk", flat=True)
        )
        for pk in pks:
            if f"{rule.model.__name__.lower()}:{pk}" in busy:
                continue
            rule.resend(pk)
            sent += 1
    return sent


def batch_cancel(*, batch_id: int, actor: Any) -> Batch:
    """Cancel: no new unit starts; steps in flight finish; nothing already made is lost.

    Units that have not started are cancelled by the worker that picks up their message (it
    sees the cancelled batch before calling any model), so a unit a worker already holds is
    never cancelled under it. Units whose message is long gone (lease expired) are cancelled
    here, as ``batches_cancel_stale_units`` does for the reconciler.
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


# The states in which a unit has not started yet, and the status that cancels it.
def _not_started() -> list[tuple[type[Any], str, str, str]]:
    from synthesis.models import Character, Story
    from synthesis.states import CharacterStatus, StoryStatus

    return [
        (Character, "batch", CharacterStatus.DRAFTING, CharacterStatus.CANCELLED),
        (Story, "batch", StoryStatus.SCRIPTING, StoryStatus.CANCELLED),
    ]


def batch_cancel_stale_units(batch: Batch, *, stale_only: bool = True) -> int:
    """Cancel the not-started units of a cancelled ``batch`` that no worker holds."""
    from django.db.models import Q
    from django.utils import timezone

    from synthesis.models import ModelCall
    from synthesis.transitions import transition

    if batch.status != BatchStatus.CANCELLED:
        return 0
    started_subjects = set(ModelCall.objects.filter(batch=batch).values_list("subject", flat=True))
    now = timezone.now()
    cancelled = 0
    for model, path, waiting, gone in _not_started():
        units = model._default_manager.filter(**{path: batch, "status": waiting})
        if stale_only:
            units = units.filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        for pk in units.values_list("pk", flat=True):
            if f"{model.__name__.lower()}:{pk}" in started_subjects:
                continue  # it called a model already: a worker holds it and will finish it
            cancelled += transition(
                model,
                pk,
                old=waiting,
                new=gone,
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
