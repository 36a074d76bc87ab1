"""The review queue: open items, hand out leases (seats), take them back, let them run out.

Every function is one short transaction that locks the item row (``SELECT … FOR UPDATE``; on
SQLite the IMMEDIATE transactions serialize writers) and re-reads what it depends on, so
concurrent experts never double-take a seat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Min
from django.utils import timezone

from review.models import (
    EventKind,
    ItemStatus,
    LeaseStatus,
    ReviewEvent,
    ReviewItem,
    ReviewLease,
    Vote,
)
from review.stages import Stage, open_seats, seat_free_sql

logger = logging.getLogger(__name__)

# How many times the queue looks again when every candidate it saw was locked by someone else.
QUEUE_TRIES = 10
# The most item ids a caller may exclude: a page sends every card it has shown this session.
EXCLUDE_MAX = 500


def _check_stage(stage: str) -> None:
    if stage not in Stage.values:
        raise ValueError(f"Unknown review stage {stage!r}")


def _lease_delta() -> timedelta:
    return timedelta(seconds=float(settings.HILAPP_REVIEW_LEASE_S))


def _skip_window() -> timedelta:
    # A skipped item is not offered to the same expert again for one lease period.
    return _lease_delta()


# --- items ---------------------------------------------------------------------------------------


def review_item_open(
    *, stage: str, subject_id: int, subject_label: str = "", priority: int = 0
) -> ReviewItem:
    """Open a review item for a subject, or return the subject's open item of that stage.

    Safe inside the caller's transaction: the insert runs in a savepoint, and a concurrent open of
    the same subject (the partial unique constraint) yields the other transaction's item.
    """
    _check_stage(stage)
    existing = ReviewItem.objects.filter(
        stage=stage, subject_id=subject_id, status=ItemStatus.OPEN
    ).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            item = ReviewItem.objects.create(
                stage=stage,
                subject_id=subject_id,
                subject_label=subject_label[:200],
                priority=priority,
            )
            ReviewEvent.objects.create(item=item, kind=EventKind.OPENED)
    except IntegrityError:
        return ReviewItem.objects.get(stage=stage, subject_id=subject_id, status=ItemStatus.OPEN)
    return item


# --- leases --------------------------------------------------------------------------------------


def _refresh_lease_summary(item: ReviewItem) -> None:
    agg = ReviewLease.objects.filter(item=item, status=LeaseStatus.ACTIVE).aggregate(
        n=Count("pk"), first=Min("expires_at")
    )
    item.leases_active = agg["n"]
    item.lease_expires_min = agg["first"]


def leases_expire_stale(item: ReviewItem, now: datetime) -> bool:
    """End the item's leases that ran out (item row locked). True when any did.

    The queue calls it before handing out a seat and ``vote_cast`` before counting seats; the
    caller saves ``leases_active`` and ``lease_expires_min``.
    """
    if item.lease_expires_min is None or item.lease_expires_min > now:
        return False
    stale = list(
        ReviewLease.objects.filter(
            item=item, status=LeaseStatus.ACTIVE, expires_at__lte=now
        ).values_list("pk", "expert_id")
    )
    if stale:
        ReviewLease.objects.filter(pk__in=[pk for pk, _ in stale]).update(
            status=LeaseStatus.EXPIRED, ended_at=now
        )
        ReviewEvent.objects.bulk_create(
            ReviewEvent(item=item, expert_id=expert_id, kind=EventKind.LEASE_EXPIRED)
            for _, expert_id in stale
        )
    _refresh_lease_summary(item)
    return True


def queue_candidates(
    *, expert_id: int, stage: str, now: datetime, exclude: Iterable[int] = ()
) -> tuple[str, list[Any]]:
    """Open items of ``stage`` that ``expert`` may take now, in queue order: ``(sql, params)``
    of a SELECT of the item rows (alias ``i``), for the caller to limit, lock or count.

    Not voted on by them, not held or recently skipped by them, not in ``exclude``, and with a
    seat free under ``stages.open_seats`` (or a lease that ran out, to be ended on the way).
    Written in SQL because every expert asks it for every card: building the same statement
    through the ORM cost more CPU than PostgreSQL took to answer it (about 4 ms against 1.6 ms
    at 1,000,000 items).
    """
    excluded = [int(pk) for pk in exclude]
    adapt = connection.ops.adapt_datetimefield_value
    not_excluded = f"AND i.id NOT IN ({', '.join(['%s'] * len(excluded))})" if excluded else ""
    sql = _CANDIDATES_SQL.replace("{not_excluded}", not_excluded)
    params = [stage, adapt(now), *excluded, expert_id, expert_id, adapt(now)]
    params.append(adapt(now - _skip_window()))
    return sql, params


def _quoted(model: type[Any]) -> str:
    return str(connection.ops.quote_name(model._meta.db_table))


# Written once: tables, columns and the seat rule are fixed; status values are the models'
# constants, written in so that the partial indexes apply.
_CANDIDATES_SQL = f"""
SELECT {", ".join(f"i.{f.column}" for f in ReviewItem._meta.concrete_fields)}
FROM {_quoted(ReviewItem)} AS i
WHERE i.stage = %s AND i.status = '{ItemStatus.OPEN}'
  AND ({seat_free_sql("i.")} OR i.lease_expires_min <= %s)
  {{not_excluded}}
  AND NOT EXISTS (
    SELECT 1 FROM {_quoted(Vote)} AS v WHERE v.item_id = i.id AND v.expert_id = %s)
  AND NOT EXISTS (
    SELECT 1 FROM {_quoted(ReviewLease)} AS l WHERE l.item_id = i.id AND l.expert_id = %s
      AND ((l.status = '{LeaseStatus.ACTIVE}' AND l.expires_at > %s)
        OR (l.status = '{LeaseStatus.SKIPPED}' AND l.ended_at > %s)))
ORDER BY i.priority DESC, i.id
"""


def _first_candidate(sql: str, params: list[Any], *, lock: bool) -> ReviewItem | None:
    if lock and connection.features.has_select_for_update_skip_locked:
        sql += " LIMIT 1 FOR UPDATE OF i SKIP LOCKED"
    else:
        sql += " LIMIT 1"
    return next(iter(ReviewItem.objects.raw(sql, params)), None)


def candidates_count(*, expert_id: int, stage: str, now: datetime, cap: int) -> int:
    """How many items ``queue_candidates`` holds, counting at most ``cap`` (in queue order, the
    count walks the queue's index and stops there)."""
    sql, params = queue_candidates(expert_id=expert_id, stage=stage, now=now)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql} LIMIT %s) AS candidates", [*params, cap])
        return int(cursor.fetchone()[0])


_LEASE_UPSERT = """
INSERT INTO {table} (item_id, expert_id, status, acquired_at, expires_at, ended_at)
VALUES (%s, %s, 'active', %s, %s, NULL)
ON CONFLICT (item_id, expert_id) DO UPDATE
    SET status = 'active', acquired_at = excluded.acquired_at,
        expires_at = excluded.expires_at, ended_at = NULL
    WHERE {table}.status NOT IN ('active', 'voted')
RETURNING id
"""


def _lease_upsert(*, item_id: int, expert_id: int, now: datetime, expires: datetime) -> bool:
    """Insert or re-activate the (item, expert) lease row in one statement; False when the
    expert already holds the seat or has voted (nothing changes then)."""
    sql = _LEASE_UPSERT.format(table=connection.ops.quote_name(ReviewLease._meta.db_table))
    with connection.cursor() as cursor:
        adapt = connection.ops.adapt_datetimefield_value
        cursor.execute(sql, [item_id, expert_id, adapt(now), adapt(expires)])
        return cursor.fetchone() is not None


def _take_seat(item: ReviewItem, expert: Any, now: datetime) -> bool:
    """Give ``expert`` a lease on the locked ``item`` if the fresh state allows it.

    The candidate query already excluded items the expert voted on or holds (one snapshot sees
    a vote and the end of its lease together), so this only re-checks the seat count, which the
    row lock makes current.
    """
    if item.status != ItemStatus.OPEN:
        return False
    changed = leases_expire_stale(item, now)
    if item.leases_active >= open_seats(item.lead_votes):
        if changed:
            item.save(update_fields=["leases_active", "lease_expires_min"])
        return False
    expires = now + _lease_delta()
    if not _lease_upsert(item_id=item.pk, expert_id=expert.pk, now=now, expires=expires):
        return False  # this expert already holds or has voted on it (a second tab)
    item.leases_active += 1
    if item.lease_expires_min is None or expires < item.lease_expires_min:
        item.lease_expires_min = expires
    item.save(update_fields=["leases_active", "lease_expires_min"])
    ReviewEvent.objects.create(
        item=item,
        expert=expert,
        kind=EventKind.LEASE_GIVEN,
        data={"expires_at": expires.isoformat()},
    )
    return True


def _held_item(*, expert: Any, stage: str, now: datetime, exclude: list[int]) -> ReviewItem | None:
    # Usually the expert holds nothing: one index lookup of lease rows answers that, and only
    # when they hold some are the items read.
    held = ReviewLease.objects.filter(expert=expert, status=LeaseStatus.ACTIVE, expires_at__gt=now)
    item_ids = [pk for pk in held.values_list("item_id", flat=True) if pk not in exclude]
    if not item_ids:
        return None
    return (
        ReviewItem.objects.filter(pk__in=item_ids, stage=stage, status=ItemStatus.OPEN)
        .order_by("-priority", "pk")
        .first()
    )


def review_queue_next(*, expert: Any, stage: str, exclude: Iterable[int] = ()) -> ReviewItem | None:
    """The next item of ``stage`` that needs a vote from ``expert``, leased to them; or None.

    An item the expert already holds (a reload, a second tab) comes back first, unless it is in
    ``exclude``: the page sends every card it has shown or still holds (at most ``EXCLUDE_MAX``),
    so a card whose vote is still on its way is never handed back. Otherwise the highest
    priority, then oldest, open item the expert has not voted on and not skipped recently, with a
    free seat. ``SKIP LOCKED`` keeps concurrent experts from waiting on each other; when every
    candidate was locked, the queue waits on the first one rather than report "no work".
    """
    _check_stage(stage)
    excluded = [int(pk) for pk in exclude][:EXCLUDE_MAX]
    held = _held_item(expert=expert, stage=stage, now=timezone.now(), exclude=excluded)
    if held is not None:
        return held
    for attempt in range(QUEUE_TRIES):
        now = timezone.now()
        sql, params = queue_candidates(expert_id=expert.pk, stage=stage, now=now, exclude=excluded)
        with transaction.atomic():
            item = _first_candidate(sql, params, lock=True)
            if item is not None and _take_seat(item, expert, now):
                return item
        if item is not None:
            continue  # the fresh state said no; look again
        candidate = _first_candidate(sql, params, lock=False)
        if candidate is None:
            return None
        # Every candidate is locked by a short transaction: wait for the first one.
        with transaction.atomic():
            item = ReviewItem.objects.select_for_update().filter(pk=candidate.pk).first()
            if item is not None and _take_seat(item, expert, timezone.now()):
                return item
        time.sleep(0.002 * attempt)
    logger.warning("review: queue gave up after %s tries (stage %s)", QUEUE_TRIES, stage)
    return None


def review_lease_release(*, expert: Any, item_id: int, skipped: bool = True) -> bool:
    """The expert gives their seat back (``skipped``: not offered to them again for a while)."""
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().filter(pk=item_id).first()
        if item is None:
            return False
        now = timezone.now()
        status = LeaseStatus.SKIPPED if skipped else LeaseStatus.RELEASED
        ended = ReviewLease.objects.filter(
            item=item, expert=expert, status=LeaseStatus.ACTIVE
        ).update(status=status, ended_at=now)
        if not ended:
            return False
        _refresh_lease_summary(item)
        item.save(update_fields=["leases_active", "lease_expires_min"])
        ReviewEvent.objects.create(
            item=item,
            expert=expert,
            kind=EventKind.LEASE_SKIPPED if skipped else EventKind.LEASE_RELEASED,
        )
        return True


def review_leases_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """End leases that ran out (for a periodic task; the queue also does it as it goes)."""
    now = now or timezone.now()
    ids = list(
        ReviewItem.objects.filter(status=ItemStatus.OPEN, lease_expires_min__lte=now).values_list(
            "pk", flat=True
        )[:limit]
    )
    done = 0
    for pk in ids:
        with transaction.atomic():
            item = ReviewItem.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            if item is not None and leases_expire_stale(item, now):
                item.save(update_fields=["leases_active", "lease_expires_min"])
                done += 1
    return done
