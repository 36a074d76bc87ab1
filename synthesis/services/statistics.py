"""Selectors for the statistics page and API: every figure as plain, JSON-ready data.

Definitions (what each number counts) are in ``docs/admin.md``. ``statistics_all()`` is cached
under a data version (the newest status change, model call, gate attempt and review event), so
the page and the API recompute only after something changed.
"""

from __future__ import annotations

import statistics as pystats
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db.models import Count, Max, Sum

from synthesis.models import (
    Character,
    Frame,
    GateAttempt,
    ModelCall,
    StatusChange,
    Story,
)
from synthesis.states import (
    ApprovalPath,
    AttemptKind,
    AttemptStatus,
    AuditStatus,
    CallStatus,
    CharacterStatus,
    FrameStatus,
    StoryStatus,
)

VIESCORE_BINS = [x / 2 for x in range(21)]  # 0, 0.5, …, 10
SCRIPTED_STORY = (
    StoryStatus.PENDING_HV2,
    StoryStatus.APPROVED,
    StoryStatus.REJECTED,
    StoryStatus.COMPLETE,
)
RESTING_FRAME = (FrameStatus.APPROVED, FrameStatus.HARD_FAILED, FrameStatus.DISCARDED)
JUDGED = (AttemptStatus.PASSED, AttemptStatus.FAILED)
CACHE_SECONDS = 3600


def data_version() -> str:
    """Changes whenever anything the statistics read has changed."""
    from review.models import ReviewEvent

    parts = [
        StatusChange.objects.aggregate(m=Max("id"))["m"],
        ModelCall.objects.aggregate(m=Max("id"))["m"],
        ModelCall.objects.exclude(status=CallStatus.STARTED).count(),
        GateAttempt.objects.aggregate(m=Max("id"))["m"],
        ReviewEvent.objects.aggregate(m=Max("id"))["m"],
        Character.objects.aggregate(m=Max("id"))["m"],
        Story.objects.aggregate(m=Max("id"))["m"],
        Frame.objects.aggregate(m=Max("id"))["m"],
    ]
    return "-".join(str(p or 0) for p in parts)


def statistics_all(*, use_cache: bool = True) -> dict[str, Any]:
    version = data_version()
    key = f"hilapp:statistics:{version}"
    if use_cache:
        cached = cache.get(key)
        if cached is not None:
            return dict(cached)
    figures: dict[str, Any] = {
        "version": version,
        "heatmap": character_heatmap(),
        "characters_per_story": characters_per_story(),
        "frames_per_story": frames_per_story(),
        "viescore": viescore_distributions(),
        "pass_rate_stage": pass_rate_per_stage(),
        "pass_rate_model": pass_rate_per_model(),
        "apt": apt_iterations(),
        "iqcc_outcomes": iqcc_outcomes(),
        "attempts_per_frame": attempts_per_frame(),
        "hv3_escalation": hv3_escalation(),
        "queue_depth": queue_depth(),
        "decisions_per_day": decisions_per_day(),
        "kappa": kappa_per_stage(),
        "cost_per_approved_frame": cost_per_approved_frame(),
        "latency": latency_percentiles(),
        "audit": gate_audit(),
        "expert_effort": expert_effort(),
    }
    cache.set(key, figures, CACHE_SECONDS)
    return figures


# --- the paper's figures ------------------------------------------------------------------------


def character_heatmap() -> dict[str, Any]:
    """Locked characters: subject-type category (rows) × profession category (columns)."""
    from synthesis.vocabulary import load_taxonomy

    taxonomy = load_taxonomy()
    subjects = [c.id for c in taxonomy.subject_categories]
    professions = [c.id for c in taxonomy.profession_categories]
    counts = [[0] * len(professions) for _ in subjects]
    rows = (
        Character.objects.filter(status=CharacterStatus.LOCKED)
        .values("subject_category", "profession_category")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        if row["subject_category"] in subjects and row["profession_category"] in professions:
            i = subjects.index(row["subject_category"])
            j = professions.index(row["profession_category"])
            counts[i][j] += row["n"]
    return {
        "subjects": subjects,
        "subject_labels": [c.label for c in taxonomy.subject_categories],
        "professions": professions,
        "profession_labels": [c.label for c in taxonomy.profession_categories],
        "counts": counts,
        "total": sum(map(sum, counts)),
    }


def _distribution(values: Iterable[int], keys: Iterable[int] | None = None) -> dict[str, int]:
    counted = Counter(values)
    wanted = sorted(set(keys or []) | set(counted))
    return {str(k): counted.get(k, 0) for k in wanted}


def characters_per_story() -> dict[str, int]:
    """Stories with a valid script, by cast size (1–5)."""
    sizes = (
        Story.objects.filter(status__in=SCRIPTED_STORY)
        .annotate(n=Count("cast"))
        .values_list("n", flat=True)
    )
    return _distribution(sizes, range(1, 6))


def frames_per_story() -> dict[str, int]:
    """Stories with a valid script, by the number of frames in the script."""
    lengths = [
        len((script or {}).get("frames") or [])
        for script in Story.objects.filter(status__in=SCRIPTED_STORY).values_list(
            "script", flat=True
        )
    ]
    return _distribution(lengths)


# --- gates ---------------------------------------------------------------------------------------


def _histogram(values: list[float], bins: list[float]) -> list[int]:
    counts = [0] * (len(bins) - 1)
    for v in values:
        i = next((k for k in range(len(bins) - 1) if v < bins[k + 1]), len(bins) - 2)
        if v >= bins[0]:
            counts[i] += 1
    return counts


def viescore_distributions() -> dict[str, Any]:
    """VIEScore (overall) of judged character-template and reference attempts."""
    out: dict[str, Any] = {"bins": VIESCORE_BINS}
    for kind in (AttemptKind.CHARACTER, AttemptKind.REFERENCE):
        scores = list(
            GateAttempt.objects.filter(kind=kind, score_overall__isnull=False).values_list(
                "score_overall", flat=True
            )
        )
        values = [float(s) for s in scores if s is not None]
        out[kind.value] = {
            "n": len(values),
            "mean": pystats.fmean(values) if values else None,
            "counts": _histogram(values, VIESCORE_BINS),
        }
    return out


def _rate(passed: int, total: int) -> float | None:
    return passed / total if total else None


def pass_rate_per_stage() -> list[dict[str, Any]]:
    """Automatic gates: judged attempts that passed; human stages: decisions that approved."""
    from review.models import ReviewDecision
    from review.stages import Choice, Stage

    rows = []
    judged = (
        GateAttempt.objects.filter(status__in=JUDGED)
        .values("kind", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    for row in judged:
        tally[row["kind"]][row["status"]] += row["n"]
    for kind in AttemptKind:
        passed, total = tally[kind.value][AttemptStatus.PASSED], sum(tally[kind.value].values())
        rows.append(
            {
                "stage": f"gate:{kind.value}",
                "passed": passed,
                "total": total,
                "rate": _rate(passed, total),
            }
        )
    human: dict[str, Counter[str]] = defaultdict(Counter)
    for stage_name, choice_name, n in (
        ReviewDecision.objects.values("stage", "choice")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("stage", "choice", "n")
    ):
        human[stage_name][choice_name] += n
    passing = {
        Stage.HV1: Choice.APPROVE,
        Stage.HV2: Choice.APPROVE,
        Stage.AUDIT: Choice.APPROVE,
        Stage.HV3: Choice.CORRECT,
    }
    for stage, choice in passing.items():
        passed, total = human[stage][choice], sum(human[stage].values())
        rows.append(
            {"stage": stage.value, "passed": passed, "total": total, "rate": _rate(passed, total)}
        )
    return rows


def pass_rate_per_model() -> list[dict[str, Any]]:
    """Per gate and producing model: judged attempts that passed."""
    rows = (
        GateAttempt.objects.filter(status__in=JUDGED)
        .values("kind", "producer_model", "status")
        .annotate(n=Count("pk"))
        .order_by("kind", "producer_model")
    )
    tally: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for row in rows:
        tally[(row["kind"], row["producer_model"] or "?")][row["status"]] += row["n"]
    return [
        {
            "gate": kind,
            "model": model,
            "passed": c[AttemptStatus.PASSED],
            "total": sum(c.values()),
            "rate": _rate(c[AttemptStatus.PASSED], sum(c.values())),
        }
        for (kind, model), c in sorted(tally.items())
    ]


def apt_iterations() -> dict[str, Any]:
    """References that failed at least once: how many edit iterations (attempts) they took.

    The paper reports 2.19 on average. ``histogram`` covers every judged reference.
    """
    per_ref: dict[int, Counter[str]] = defaultdict(Counter)
    for ref_id, status in GateAttempt.objects.filter(
        kind=AttemptKind.REFERENCE, status__in=JUDGED
    ).values_list("reference_id", "status"):
        per_ref[ref_id][status] += 1
    iterations = [sum(c.values()) for c in per_ref.values() if c[AttemptStatus.FAILED]]
    return {
        "references": len(per_ref),
        "failed_once": len(iterations),
        "mean": pystats.fmean(iterations) if iterations else None,
        "histogram": _distribution(sum(c.values()) for c in per_ref.values()),
    }


def iqcc_outcomes() -> dict[str, int]:
    """Judged frame attempts: passed, or failed with a global / local error."""
    out = {"pass": 0, "global": 0, "local": 0, "other": 0}
    for status, scope in GateAttempt.objects.filter(
        kind=AttemptKind.FRAME, status__in=JUDGED
    ).values_list("status", "error_scope"):
        if status == AttemptStatus.PASSED:
            out["pass"] += 1
        else:
            out[scope if scope in ("global", "local") else "other"] += 1
    return out


def attempts_per_frame() -> dict[str, Any]:
    """Frames that came to rest (approved, hard-failed, discarded): frame attempts each made."""
    counts = (
        Frame.objects.filter(status__in=RESTING_FRAME)
        .annotate(n=Count("attempts"))
        .values_list("n", flat=True)
    )
    values = list(counts)
    return {"histogram": _distribution(values), "mean": pystats.fmean(values) if values else None}


def hv3_escalation() -> dict[str, Any]:
    """Frames that came to rest, and the share of them that hard-failed to HV3 at least once."""
    resting = set(Frame.objects.filter(status__in=RESTING_FRAME).values_list("pk", flat=True))
    escalated = set(
        StatusChange.objects.filter(model="frame", new=FrameStatus.HARD_FAILED).values_list(
            "object_id", flat=True
        )
    )
    escalated |= set(
        Frame.objects.filter(
            status__in=(FrameStatus.HARD_FAILED, FrameStatus.DISCARDED)
        ).values_list("pk", flat=True)
    )
    escalated |= set(
        Frame.objects.filter(
            approval_path__in=(ApprovalPath.HV3_UPLOAD, ApprovalPath.HV3_EDIT)
        ).values_list("pk", flat=True)
    )
    n = len(escalated & resting)
    return {"frames": len(resting), "escalated": n, "rate": _rate(n, len(resting))}


# --- humans --------------------------------------------------------------------------------------


def queue_depth(max_points: int = 200) -> dict[str, list[list[Any]]]:
    """Open review items per stage over time: a step series [[iso time, depth], …]."""
    from review.models import ReviewItem

    events: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for stage, opened, decided in ReviewItem.objects.values_list(
        "stage", "created_at", "decided_at"
    ):
        events[stage].append((opened, 1))
        if decided is not None:
            events[stage].append((decided, -1))
    out: dict[str, list[list[Any]]] = {}
    for stage, evs in sorted(events.items()):
        evs.sort()
        depth, series = 0, []
        for at, delta in evs:
            depth += delta
            series.append([at.isoformat(), depth])
        if len(series) > max_points:  # keep the shape: every k-th point and the last
            k = -(-len(series) // max_points)
            series = series[::k] + ([series[-1]] if (len(series) - 1) % k else [])
        out[stage] = series
    return out


def decisions_per_day() -> dict[str, dict[str, int]]:
    """Review decisions per UTC day and stage: {day: {stage: n}}."""
    from review.models import ReviewDecision

    out: dict[str, Counter[str]] = defaultdict(Counter)
    for stage, at in ReviewDecision.objects.values_list("stage", "decided_at"):
        out[at.date().isoformat()][stage] += 1
    return {day: dict(c) for day, c in sorted(out.items())}


def kappa_per_stage() -> list[dict[str, Any]]:
    """Fleiss' kappa per review stage over decided items (``review.agreement``)."""
    from review.agreement import stage_agreement

    return [
        {
            "stage": a.stage,
            "label": a.label,
            "items": a.items,
            "votes": a.votes,
            "kappa": a.kappa,
            "pairwise": a.pairwise,
        }
        for a in stage_agreement()
    ]


# --- money and time ------------------------------------------------------------------------------


def cost_per_approved_frame() -> dict[str, Any]:
    """All model spending divided by the approved frames, in total and by provider and role.

    All-in: characters and scripts are part of what an approved frame costs.
    """
    approved = Frame.objects.filter(status=FrameStatus.APPROVED).count()
    total = ModelCall.objects.aggregate(s=Sum("cost_usd"))["s"] or Decimal(0)
    rows = (
        ModelCall.objects.values("provider", "role")
        .annotate(cost=Sum("cost_usd"), calls=Count("pk"))
        .order_by("provider", "role")
    )

    def per(cost: Decimal) -> float | None:
        return float(cost) / approved if approved else None

    return {
        "approved_frames": approved,
        "total_usd": float(total),
        "per_frame_usd": per(total),
        "by": [
            {
                "provider": r["provider"],
                "role": r["role"],
                "calls": r["calls"],
                "cost_usd": float(r["cost"] or 0),
                "per_frame_usd": per(r["cost"] or Decimal(0)),
            }
            for r in rows
        ],
    }


def percentile(sorted_values: list[int], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_percentiles() -> list[dict[str, Any]]:
    """Latency of successful calls per provider:model and role: p50, p90, p99 (ms)."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for provider, model, role, ms in ModelCall.objects.filter(
        status=CallStatus.OK, latency_ms__isnull=False
    ).values_list("provider", "model", "role", "latency_ms"):
        if ms is not None:
            groups[(f"{provider}:{model}", role)].append(ms)
    out = []
    for (model, role), values in sorted(groups.items()):
        values.sort()
        out.append(
            {
                "model": model,
                "role": role,
                "calls": len(values),
                "p50": percentile(values, 50),
                "p90": percentile(values, 90),
                "p99": percentile(values, 99),
            }
        )
    return out


def gate_audit() -> dict[str, Any]:
    """The sampled audit of gate-approved frames: false-accept rate with a 95% Wilson CI."""
    from synthesis.services.gate_audit import wilson_interval

    counts = Counter(Frame.objects.exclude(audit=AuditStatus.NONE).values_list("audit", flat=True))
    rejected, confirmed = counts[AuditStatus.REJECTED], counts[AuditStatus.CONFIRMED]
    decided = rejected + confirmed
    interval = wilson_interval(rejected, decided)
    latest = [
        {"frame": pk, "story": story, "index": index}
        for pk, story, index in Frame.objects.filter(audit=AuditStatus.REJECTED)
        .order_by("-updated_at")
        .values_list("pk", "story_id", "index")[:20]
    ]
    return {
        "pending": counts[AuditStatus.PENDING],
        "confirmed": confirmed,
        "rejected": rejected,
        "decided": decided,
        "false_accept_rate": _rate(rejected, decided),
        "ci95": list(interval) if interval else None,
        "rejected_frames": latest,
    }


# --- expert time ---------------------------------------------------------------------------------

# The paper's scale: 2,000 character templates judged in HV1 and 10,000 story scripts in HV2;
# HV3 and the audit scale with the frames, at the rates measured here.
PAPER_CIDS = 2_000
PAPER_STORIES = 10_000
# Frames per story when none has been scripted yet: the middle of the paper's 7 to 12.
PAPER_FRAMES_PER_STORY = 9.5
# HV3 items per frame when no frame has come to rest yet: the paper's "approximately 2%".
PAPER_HV3_RATE = 0.02


def _median_s(values: list[int]) -> float | None:
    return pystats.median(values) / 1000 if values else None


def _mean_s(values: list[int]) -> float | None:
    return pystats.fmean(values) / 1000 if values else None


def expert_effort() -> dict[str, Any]:
    """What the decided review items cost the experts, and what the paper's scale would cost.

    Over decided items only (an open item's votes and dwell stay blind). Per stage: looks per
    decided item (votes plus seats the item was decided under: the *wasted* looks), dwell time
    (median and mean of the votes that carry one), and expert-seconds (looks × mean dwell).
    Expert-seconds per approved frame divide every stage's seconds by the approved frames, so
    HV1 and HV2 time is spread over the frames it led to. The projection multiplies the paper's
    item counts (HV3 and audit: the measured items per frame) by looks per item and mean dwell.
    """
    from django.contrib.auth import get_user_model

    from review.models import EventKind, ReviewDecision, ReviewEvent, Vote
    from review.stages import Stage

    decided = dict(
        ReviewDecision.objects.order_by()
        .values_list("stage")
        .annotate(n=Count("pk"))
        .values_list("stage", "n")
    )
    votes: dict[str, int] = defaultdict(int)
    dwell: dict[str, list[int]] = defaultdict(list)
    per_expert: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    expert_votes: Counter[int] = Counter()
    for stage, expert_id, ms in Vote.objects.filter(item__status="decided").values_list(
        "stage", "expert_id", "dwell_ms"
    ):
        votes[stage] += 1
        expert_votes[expert_id] += 1
        if ms is not None:
            dwell[stage].append(ms)
            per_expert[expert_id][stage].append(ms)
    wasted = Counter(
        ReviewEvent.objects.filter(
            kind=EventKind.LEASE_RELEASED, data__reason="decided", item__status="decided"
        ).values_list("item__stage", flat=True)
    )
    approved = Frame.objects.filter(status=FrameStatus.APPROVED).count()
    stages = []
    total_seconds = 0.0
    for stage in Stage:
        n = decided.get(stage.value, 0)
        looks = votes[stage.value] + wasted[stage.value]
        mean = _mean_s(dwell[stage.value])
        seconds = looks * mean if mean is not None else None
        total_seconds += seconds or 0.0
        stages.append(
            {
                "stage": stage.value,
                "label": stage.label,
                "decided": n,
                "votes": votes[stage.value],
                "wasted_looks": wasted[stage.value],
                "looks_per_decided": looks / n if n else None,
                "wasted_per_decided": wasted[stage.value] / n if n else None,
                "votes_with_dwell": len(dwell[stage.value]),
                "median_dwell_s": _median_s(dwell[stage.value]),
                "mean_dwell_s": mean,
                "expert_seconds": seconds,
                "seconds_per_approved_frame": seconds / approved
                if seconds is not None and approved
                else None,
            }
        )
    names = dict(
        get_user_model().objects.filter(pk__in=list(expert_votes)).values_list("pk", "username")
    )
    experts = [
        {
            "expert": names.get(expert_id, str(expert_id)),
            "votes": expert_votes[expert_id],
            "median_dwell_s": _median_s([ms for v in per_expert[expert_id].values() for ms in v]),
            "median_dwell_s_by_stage": {
                stage: _median_s(values) for stage, values in sorted(per_expert[expert_id].items())
            },
        }
        for expert_id in sorted(expert_votes, key=lambda e: names.get(e, ""))
    ]
    return {
        "stages": stages,
        "experts": experts,
        "approved_frames": approved,
        "expert_seconds": total_seconds,
        "expert_seconds_per_approved_frame": total_seconds / approved if approved else None,
        "projection": paper_projection({str(s["stage"]): s for s in stages}),
    }


def paper_projection(by_stage: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Expert-hours per stage at the paper's scale, from the measured looks and dwell."""
    from review.models import ReviewItem

    resting = Frame.objects.filter(status__in=RESTING_FRAME).count()
    stories = list(
        Story.objects.filter(frames__isnull=False)
        .annotate(n=Count("frames"))
        .values_list("n", flat=True)
    )
    frames_per_story = pystats.fmean(stories) if stories else PAPER_FRAMES_PER_STORY
    frames = PAPER_STORIES * frames_per_story
    per_frame = {
        stage: (ReviewItem.objects.filter(stage=stage).count() / resting if resting else None)
        for stage in ("hv3", "audit")
    }
    hv3_rate = per_frame["hv3"] if per_frame["hv3"] is not None else PAPER_HV3_RATE
    audit_rate = per_frame["audit"]
    items: dict[str, float | None] = {
        "hv1": float(PAPER_CIDS),
        "hv2": float(PAPER_STORIES),
        "hv3": frames * hv3_rate,
        "audit": frames * audit_rate if audit_rate is not None else None,
    }
    rows = []
    total = 0.0
    for stage, count in items.items():
        measured = by_stage.get(stage, {})
        looks, mean = measured.get("looks_per_decided"), measured.get("mean_dwell_s")
        hours = (
            count * looks * mean / 3600
            if count is not None and looks is not None and mean is not None
            else None
        )
        total += hours or 0.0
        rows.append(
            {
                "stage": stage,
                "items": count,
                "looks_per_item": looks,
                "mean_dwell_s": mean,
                "expert_hours": hours,
            }
        )
    return {
        "stories": PAPER_STORIES,
        "cids": PAPER_CIDS,
        "frames_per_story": frames_per_story,
        "frames": frames,
        "hv3_rate": hv3_rate,
        "hv3_rate_measured": per_frame["hv3"] is not None,
        "audit_rate": audit_rate,
        "stages": rows,
        "expert_hours": total,
    }
