"""Inter-rater agreement: Fleiss' kappa, pairwise agreement, and per-expert figures.

Only decided items count (an open item's votes are blind). Note the bias that early stopping
brings: an item whose first two votes agree stops at two votes, so splits are over-represented
among three-vote items; kappa still compares observed with chance agreement over all pairs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from review.models import ItemStatus, Vote
from review.stages import Stage, choices_for

# Gaps between an expert's consecutive votes longer than this count as a break, not work.
ACTIVE_GAP = timedelta(minutes=5)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of ``counts[i][j]``: how many raters put subject i in category j.

    With the same number of raters n for every subject this is Fleiss (1971):
    ``P_i = (Σ_j n_ij² - n) / (n(n - 1))``, ``P̄`` their mean, ``p_j = Σ_i n_ij / Σ_i n``,
    ``P_e = Σ_j p_j²`` and ``κ = (P̄ - P_e) / (1 - P_e)``. Subjects may have different numbers
    of raters (each ``P_i`` uses its own ``n_i``; subjects with fewer than two are left out),
    which is what a two-vote stopping rule produces. Returns None when undefined (no subject
    with two raters, or every rating in one category).
    """
    rows = [list(row) for row in counts if sum(row) >= 2]
    if not rows:
        return None
    p_bar = 0.0
    for row in rows:
        n = sum(row)
        p_bar += (sum(x * x for x in row) - n) / (n * (n - 1))
    p_bar /= len(rows)
    total = sum(sum(row) for row in rows)
    width = max(len(row) for row in rows)
    p_j = [sum(row[j] for row in rows if j < len(row)) / total for j in range(width)]
    p_e = sum(p * p for p in p_j)
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1.0 - p_e)


def pairwise_agreement(counts: Sequence[Sequence[int]]) -> float | None:
    """The share of rater pairs, over all subjects, that chose the same category."""
    agreeing = sum(x * (x - 1) for row in counts for x in row)
    pairs = sum(sum(row) * (sum(row) - 1) for row in counts)
    return agreeing / pairs if pairs else None


@dataclass(frozen=True)
class StageAgreement:
    stage: str
    label: str
    items: int
    votes: int
    kappa: float | None
    pairwise: float | None


@dataclass(frozen=True)
class ExpertAgreement:
    expert_id: int
    username: str
    votes: int
    decided_votes: int
    agreement_with_outcome: float | None
    votes_per_hour: float | None


def _decided_votes(since: datetime | None) -> QuerySet[Vote]:
    qs = Vote.objects.filter(item__status=ItemStatus.DECIDED)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return qs


def stage_agreement(*, since: datetime | None = None) -> list[StageAgreement]:
    per_item: dict[str, dict[int, list[int]]] = defaultdict(dict)
    index = {stage: {c: i for i, c in enumerate(choices_for(stage))} for stage in Stage.values}
    for stage, item_id, choice in _decided_votes(since).values_list("stage", "item_id", "choice"):
        row = per_item[stage].setdefault(item_id, [0] * len(index[stage]))
        row[index[stage][choice]] += 1
    result = []
    for stage in Stage:
        rows = list(per_item[stage.value].values())
        result.append(
            StageAgreement(
                stage=stage.value,
                label=stage.label,
                items=len(rows),
                votes=sum(sum(r) for r in rows),
                kappa=fleiss_kappa(rows),
                pairwise=pairwise_agreement(rows),
            )
        )
    return result


def votes_per_hour(times: Sequence[datetime]) -> float | None:
    """Votes per hour of active time (gaps over ``ACTIVE_GAP`` are breaks, not work)."""
    ordered = sorted(times)
    active = sum(
        (min(b - a, ACTIVE_GAP) for a, b in pairwise(ordered)),
        timedelta(0),
    )
    if active <= timedelta(0):
        return None
    return (len(ordered) - 1) / (active.total_seconds() / 3600)


def expert_agreement(
    *, since: datetime | None = None, expert_id: int | None = None
) -> list[ExpertAgreement]:
    votes = Vote.objects.all()
    if since is not None:
        votes = votes.filter(created_at__gte=since)
    if expert_id is not None:
        votes = votes.filter(expert_id=expert_id)
    times: dict[int, list[datetime]] = defaultdict(list)
    matched: dict[int, int] = defaultdict(int)
    decided: dict[int, int] = defaultdict(int)
    for eid, created, choice, status, outcome in votes.values_list(
        "expert_id", "created_at", "choice", "item__status", "item__decided_choice"
    ):
        times[eid].append(created)
        if status == ItemStatus.DECIDED:
            decided[eid] += 1
            matched[eid] += choice == outcome
    names = dict(get_user_model().objects.filter(pk__in=list(times)).values_list("pk", "username"))
    return sorted(
        (
            ExpertAgreement(
                expert_id=eid,
                username=names.get(eid, str(eid)),
                votes=len(ts),
                decided_votes=decided[eid],
                agreement_with_outcome=matched[eid] / decided[eid] if decided[eid] else None,
                votes_per_hour=votes_per_hour(ts),
            )
            for eid, ts in times.items()
        ),
        key=lambda row: row.username,
    )
