"""The reconciler: finds work stuck in a non-terminal state past its lease and sends it again.

It is the safety net behind "a killed worker, a lost message or a restarted broker loses
nothing": every working state of every unit appears in ``STUCK_RULES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from synthesis import dispatch
from synthesis.models import Batch, Character, ModelCall
from synthesis.states import AttemptKind, BatchStatus, CallStatus, CharacterStatus


@dataclass(frozen=True)
class StuckRule:
    name: str
    model: type[models.Model]
    statuses: tuple[str, ...]
    batch_path: str  # lookup from the unit to its batch
    resend: Callable[[int], None]
    status_field: str = "status"


def _resend_draft(pk: int) -> None:
    from synthesis.services.characters import characters_send_draft

    characters_send_draft([Character.objects.select_related("batch").get(pk=pk)])


def _resend_gate(kind: AttemptKind) -> Callable[[int], None]:
    def resend(pk: int) -> None:
        from synthesis.gate import gate_send
        from synthesis.gate_policies import policy_for

        gate_send(policy_for(kind), pk)

    return resend


def _resend_script(pk: int) -> None:
    from synthesis.models import Story
    from synthesis.services.stories import stories_send_script

    stories_send_script([Story.objects.select_related("batch").get(pk=pk)])


STUCK_RULES: list[StuckRule] = [
    StuckRule("character_draft", Character, (CharacterStatus.DRAFTING,), "batch", _resend_draft),
    StuckRule(
        "character_gate",
        Character,
        (CharacterStatus.RENDERING,),
        "batch",
        _resend_gate(AttemptKind.CHARACTER),
    ),
]


def register_stuck_rule(rule: StuckRule) -> None:
    """Phase II/III add their working states here."""
    if all(r.name != rule.name for r in STUCK_RULES):
        STUCK_RULES.append(rule)


def reconcile_stuck_work(*, limit: int = 1000) -> dict[str, int]:
    now = timezone.now()
    counts: dict[str, int] = {}
    for rule in STUCK_RULES:
        expired = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
        pks = list(
            rule.model._default_manager.filter(expired)
            .filter(**{f"{rule.status_field}__in": rule.statuses})
            .filter(**{f"{rule.batch_path}__status": BatchStatus.RUNNING})
            .values_list("pk", flat=True)[:limit]
        )
        for pk in pks:
            with transaction.atomic():
                rule.resend(pk)
        if pks:
            counts[rule.name] = len(pks)
    from synthesis.services.batches import batches_cancel_stale_units

    counts["cancelled_units"] = batches_cancel_stale_units()
    counts["abandoned_calls"] = _close_abandoned_calls(now)
    from synthesis.export.jobs import export_jobs_requeue_stalled

    counts["exports_requeued"] = export_jobs_requeue_stalled(
        stalled_after_s=settings.HILAPP_LEASE_S
    )
    counts["batches_done"] = _finish_batches()
    return counts


def _close_abandoned_calls(now: datetime) -> int:
    """A call ``started`` long past any timeout belongs to a worker that died mid-call."""
    cutoff = now - timedelta(seconds=settings.HILAPP_LEASE_S + settings.PROVIDER_TIMEOUT_S)
    return ModelCall.objects.filter(status=CallStatus.STARTED, started_at__lt=cutoff).update(
        status=CallStatus.ABANDONED, error="worker died during the call", finished_at=now
    )


def _finish_batches() -> int:
    from synthesis.services.progress import batch_is_finished
    from synthesis.transitions import transition

    done = 0
    for batch in Batch.objects.filter(status=BatchStatus.RUNNING):
        if batch_is_finished(batch) and transition(
            Batch,
            batch.pk,
            old=BatchStatus.RUNNING,
            new=BatchStatus.DONE,
            reason="every unit reached a resting state",
            finished_at=timezone.now(),
        ):
            done += 1
    # A cancelled batch is finished once its in-flight units have come to rest.
    for batch in Batch.objects.filter(status=BatchStatus.CANCELLED, finished_at__isnull=True):
        if batch_is_finished(batch):
            Batch.objects.filter(pk=batch.pk).update(finished_at=timezone.now())
    return done


# --- Phase II / III working states ---------------------------------------------------------------


def _story_check(pk: int) -> None:
    from synthesis.services.stories import story_check_complete

    story_check_complete(story_id=pk)


def _register_story_and_frame_rules() -> None:
    from synthesis.models import Frame, FrameCharacter, Story
    from synthesis.states import FrameStatus, ReferenceStatus, StoryStatus

    for rule in (
        StuckRule(
            "story_script",
            Story,
            (StoryStatus.SCRIPTING,),
            "batch",
            _resend_script,
        ),
        # A story whose last frame's completion check was lost (cheap: checked in place).
        StuckRule("story_complete", Story, (StoryStatus.APPROVED,), "batch", _story_check),
        StuckRule(
            "frame_references",
            Frame,
            (FrameStatus.REFERENCES,),
            "story__batch",
            lambda pk: dispatch.frame_references([pk]),
        ),
        StuckRule(
            "frame_gate",
            Frame,
            (FrameStatus.RENDERING,),
            "story__batch",
            _resend_gate(AttemptKind.FRAME),
        ),
        StuckRule(
            "reference_gate",
            FrameCharacter,
            (ReferenceStatus.EDITING,),
            "frame__story__batch",
            _resend_gate(AttemptKind.REFERENCE),
            status_field="reference_status",
        ),
    ):
        register_stuck_rule(rule)


_register_story_and_frame_rules()
