"""Review read queries for pages and the API."""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from django.utils import timezone

from review.models import ItemStatus, ReviewEvent, ReviewItem, ReviewLease, Vote
from review.stages import Stage


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


def expert_votes_today(expert: Any) -> int:
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return Vote.objects.filter(expert=expert, created_at__gte=start).count()


def expert_vote_on(expert: Any, item: ReviewItem) -> Vote | None:
    return Vote.objects.filter(item=item, expert=expert).first()


def expert_lease_on(expert: Any, item: ReviewItem) -> ReviewLease | None:
    return ReviewLease.objects.filter(item=item, expert=expert).first()


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
