"""The reconciler: finds work stuck in a non-terminal state past its lease and sends it again.

A unit whose message may still be waiting in its queue is not stuck, only behind a backlog:
it is left alone until its queue has moved past it (``synthesis.queue_backlog``).

It is the safety net behind "a killed worker, a lost message or a restarted broker loses
nothing": every working state of every unit is in the work-unit registry
(``synthesis.work_units.WORK_UNITS``), and a unit is sent again only while the batch that owns
it is running (a paused batch's work waits for resume; a cancelled batch's is never resent).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from synthesis.export.jobs import export_jobs_requeue_stalled
from synthesis.models import Batch, ModelCall
from synthesis.providers.queues import PIPELINE_QUEUES
from synthesis.queue_backlog import oldest_waiting
from synthesis.services.batch_lifecycle import batches_cancel_stale_units
from synthesis.services.progress import batch_is_finished
from synthesis.states import BatchStatus, CallStatus
from synthesis.transitions import transition
from synthesis.work_units import WORK_UNITS


def reconcile_stuck_work(*, limit: int = 1000) -> dict[str, int]:
    now = timezone.now()
    counts: dict[str, int] = {}
    expired = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    queued = _maybe_still_queued()
    for unit in WORK_UNITS:
        pks = list(
            unit.units()
            .filter(
                expired, unit.in_states(unit.working), unit.owner.status_in(BatchStatus.RUNNING)
            )
            .exclude(queued)
            .values_list("pk", flat=True)[:limit]
        )
        for pk in pks:
            with transaction.atomic():
                unit.resend(pk)
        if pks:
            counts[unit.name] = len(pks)
    counts["cancelled_units"] = batches_cancel_stale_units()
    counts["abandoned_calls"] = _close_abandoned_calls(now)
    counts["exports_requeued"] = export_jobs_requeue_stalled(
        stalled_after_s=settings.HILAPP_LEASE_S
    )
    counts["batches_done"] = _finish_batches()
    return counts


def _maybe_still_queued() -> Q:
    """Units whose message may still wait in line: sent to a queue that holds a message sent
    no later than theirs (first in, first out: theirs is behind it, unless it was lost)."""
    queued = Q(pk__in=[])
    for queue, since in oldest_waiting(PIPELINE_QUEUES).items():
        queued |= Q(sent_to=queue, sent_at__gte=since)
    return queued


def _close_abandoned_calls(now: datetime) -> int:
    """A call ``started`` long past any timeout belongs to a worker that died mid-call."""
    cutoff = now - timedelta(seconds=settings.HILAPP_LEASE_S + settings.PROVIDER_TIMEOUT_S)
    return ModelCall.objects.filter(status=CallStatus.STARTED, started_at__lt=cutoff).update(
        status=CallStatus.ABANDONED, error="worker died during the call", finished_at=now
    )


def _finish_batches() -> int:
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
    # A cancelled batch is finished once nothing it owns is in flight any more.
    for batch in Batch.objects.filter(status=BatchStatus.CANCELLED, finished_at__isnull=True):
        if batch_is_finished(batch):
            Batch.objects.filter(pk=batch.pk).update(finished_at=timezone.now())
    return done
