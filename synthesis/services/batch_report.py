"""Selector: one batch's live report — counts, progress, throughput, ETA, spend, failures.

The batches page polls it (through ``GET /api/v1/batches/<id>/``) every few seconds.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from synthesis.models import Batch, ModelCall, StatusChange
from synthesis.services.failures import failure_readable
from synthesis.services.progress import batch_counts, batch_phase_progress
from synthesis.states import BatchStatus, CallStatus
from synthesis.work_units import PHASES, PHASES_OF_KIND

FAILURE_STATES = ("failed", "discarded", "dropped", "hard_failed", "rejected")


def _failed_units(batch: Batch) -> Q:
    """Status changes to a failure of any unit the batch owns, in every phase (a story batch's
    discarded frames are its failures too)."""
    owned = Q(pk__in=[])
    for phase in PHASES_OF_KIND[batch.kind]:
        units = PHASES[phase]
        owned |= Q(
            model=units.model.__name__.lower(),
            object_id__in=units.model._default_manager.filter(units.owner.of(batch)).values("pk"),
        )
    return owned & Q(new__in=FAILURE_STATES)


def batch_spend(batch: Batch) -> Decimal:
    return ModelCall.objects.filter(batch=batch).aggregate(s=Sum("cost_usd"))["s"] or Decimal(0)


def batch_failures(batch: Batch, *, limit: int = 10) -> list[dict[str, Any]]:
    """The latest failures with their reasons: units that failed or were discarded, and calls."""
    changes = (
        StatusChange.objects.filter(_failed_units(batch))
        .order_by("-id")
        .values("at", "model", "object_id", "new", "reason")[:limit]
    )
    calls = (
        ModelCall.objects.filter(batch=batch, status__in=(CallStatus.FAILED, CallStatus.ABANDONED))
        .order_by("-id")
        .values("started_at", "subject", "role", "provider", "model", "error_kind", "error")[:limit]
    )
    # (when, what, kind, stored text, reason as the API has always given it)
    rows: list[tuple[datetime, str, str, str, str]] = [
        (
            c["at"],
            f"{c['model']} {c['object_id']} → {c['new']}",
            c["new"],
            c["reason"],
            c["reason"] or "(no reason recorded)",
        )
        for c in changes
    ] + [
        (
            c["started_at"],
            f"{c['role']} call {c['provider']}:{c['model']} ({c['subject']})",
            c["error_kind"] or "call failed",
            c["error"],
            f"{c['error_kind']}: {c['error']}".strip(": "),
        )
        for c in calls
    ]
    rows.sort(key=lambda r: r[0], reverse=True)
    # A kind and one line for the page, the stored text as details on demand.
    return [
        {"at": at.isoformat(), "what": what, "reason": reason}
        | failure_readable(kind=kind, text=text)
        for at, what, kind, text, reason in rows[:limit]
    ]


def batch_report(batch: Batch) -> dict[str, Any]:
    counts = batch_counts(batch)
    phases = batch_phase_progress(batch)
    total = sum(p.total for p in phases) or batch.requested
    machine = sum(p.machine for p in phases)
    humans = sum(p.humans for p in phases)
    done = sum(p.done for p in phases)
    # Throughput and ETA are about machine work: units waiting for people are not late.
    past_machine = total - machine
    calls = ModelCall.objects.filter(batch=batch)
    call_times = calls.aggregate(first=Min("started_at"), last=Max("finished_at"))
    now = timezone.now()
    started = call_times["first"] or batch.created_at
    end = now if batch.status == BatchStatus.RUNNING else (call_times["last"] or now)
    elapsed_s = max((end - started).total_seconds(), 0.001)
    per_minute = past_machine / elapsed_s * 60 if past_machine else 0.0
    eta_s = (
        machine / per_minute * 60
        if batch.status == BatchStatus.RUNNING and per_minute > 0 and machine > 0
        else None
    )
    spend = batch_spend(batch)
    budget = batch.budget_usd
    by_status = dict(
        calls.order_by().values_list("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    return {
        "id": batch.pk,
        "kind": batch.kind,
        "status": batch.status,
        "note": batch.note,
        "seed": batch.seed,
        "requested": batch.requested,
        "params": batch.params,
        "created_at": batch.created_at.isoformat(),
        "created_by": batch.created_by.get_username() if batch.created_by else None,
        "counts": counts,
        "done": done,
        "machine": machine,
        "humans": humans,
        "total": total,
        "phases": [p.as_dict() for p in phases],
        "percent": round(100 * done / total, 1) if total else 0.0,
        "throughput_per_min": round(per_minute, 2),
        "eta_s": round(eta_s) if eta_s is not None else None,
        "spend_usd": float(spend),
        "budget_usd": float(budget) if budget is not None else None,
        "budget_percent": round(100 * float(spend / budget), 1) if budget else None,
        "calls": by_status,
        "in_flight_calls": by_status.get(CallStatus.STARTED, 0),
        "failures": batch_failures(batch),
        "actions": batch_actions(batch),
    }


def batch_actions(batch: Batch) -> list[str]:
    return {
        BatchStatus.RUNNING: ["pause", "cancel"],
        BatchStatus.PAUSED: ["resume", "cancel"],
    }.get(BatchStatus(batch.status), [])
