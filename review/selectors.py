"""Review read queries for pages and the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, Min, OuterRef, Sum
from django.utils import timezone

from review.models import ItemStatus, LeaseStatus, ReviewEvent, ReviewItem, ReviewLease, Vote
from review.queue import candidates_count
from review.stages import Stage

# Counts shown to an expert stop here ("1000+"): an exact count of a big backlog costs a scan.
COUNT_CAP = 1000


def queue_depths() -> dict[str, int]:
    """Open items per stage (every stage present, zero when empty)."""
    depths = dict.fromkeys(Stage.values, 0)
    rows = (
        ReviewItem.objects.filter(status=ItemStatus.OPEN)
        .order_by()
        .values_list("stage")
        .annotate(n=Count("pk"))
        .values_list("stage", "n")
    )
    depths.update(dict(rows))
    return depths


def _today() -> datetime:
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def expert_votes_today(expert: Any) -> int:
    return Vote.objects.filter(expert=expert, created_at__gte=_today()).count()


@dataclass(frozen=True)
class Progress:
    votes: int
    by_stage: dict[str, int]
    seconds_on_cards: float  # the dwell time the page measured, summed


def expert_progress_today(expert: Any) -> Progress:
    rows = (
        Vote.objects.filter(expert=expert, created_at__gte=_today())
        .order_by()
        .values_list("stage")
        .annotate(n=Count("pk"), ms=Sum("dwell_ms"))
    )
    by_stage = dict.fromkeys(Stage.values, 0)
    total_ms = 0
    for stage, n, ms in rows:
        by_stage[stage] = n
        total_ms += ms or 0
    return Progress(sum(by_stage.values()), by_stage, total_ms / 1000)


def _capped(qs: Any) -> int:
    return int(qs[: COUNT_CAP + 1].count())


def waiting_for(expert: Any, stage: str) -> int:
    """Items of ``stage`` the queue would hand ``expert`` now (incl. those they hold), capped."""
    now = timezone.now()
    held = ReviewLease.objects.filter(
        expert=expert,
        status=LeaseStatus.ACTIVE,
        expires_at__gt=now,
        item__stage=stage,
        item__status=ItemStatus.OPEN,
    ).count()
    free = candidates_count(expert_id=expert.pk, stage=stage, now=now, cap=COUNT_CAP + 1)
    return min(held + free, COUNT_CAP + 1)


def remaining_for(expert: Any, stage: str, exclude: list[int] | None = None) -> int:
    """Open items of ``stage`` that ``expert`` has not voted on, less ``exclude`` (the cards the
    page already showed: voted, in the undo window, or skipped); capped at ``COUNT_CAP`` + 1."""
    mine = Vote.objects.filter(item=OuterRef("pk"), expert=expert)
    qs = ReviewItem.objects.filter(stage=stage, status=ItemStatus.OPEN).filter(~Exists(mine))
    if exclude:
        qs = qs.exclude(pk__in=exclude)
    # In queue order, the capped count walks the queue's index and stops at the cap. Unordered,
    # PostgreSQL merged the whole item table against the expert's votes: 375 ms at 1,000,000
    # items, on every card.
    return _capped(qs.order_by("-priority", "pk"))


@dataclass(frozen=True)
class HeldByOthers:
    items: int
    first_free_at: datetime | None  # when the first of those leases runs out


def held_by_others(expert: Any, stage: str, exclude: list[int] | None = None) -> HeldByOthers:
    """Open items without ``expert``'s vote whose seats other experts hold: the tail of a queue.

    The page shows it instead of a bare "nothing waits" and checks again when a lease runs out.
    """
    now = timezone.now()
    mine = Vote.objects.filter(item=OuterRef("pk"), expert=expert)
    qs = ReviewItem.objects.filter(
        stage=stage, status=ItemStatus.OPEN, leases_active__gt=0, lease_expires_min__gt=now
    ).filter(~Exists(mine))
    if exclude:
        qs = qs.exclude(pk__in=exclude)
    agg = qs.aggregate(n=Count("pk"), first=Min("lease_expires_min"))
    return HeldByOthers(agg["n"], agg["first"] if agg["n"] else None)


def expert_vote_on(expert: Any, item: ReviewItem) -> Vote | None:
    return Vote.objects.filter(item=item, expert=expert).first()


def expert_recent_items(expert: Any, limit: int = 20) -> list[ReviewItem]:
    """The items this expert voted on last, newest first (for "my recent votes")."""
    ids = list(
        Vote.objects.filter(expert=expert)
        .order_by("-created_at")
        .values_list("item_id", flat=True)[:limit]
    )
    items = ReviewItem.objects.in_bulk(ids)
    return [items[i] for i in ids if i in items]


def item_votes(item: ReviewItem) -> list[Vote]:
    """Every vote on an item (admins only: callers check the role)."""
    return list(Vote.objects.filter(item=item).select_related("expert").order_by("pk"))


def item_events(item: ReviewItem) -> list[ReviewEvent]:
    return list(ReviewEvent.objects.filter(item=item).select_related("expert").order_by("pk"))
