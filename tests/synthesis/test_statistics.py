"""Statistics on a small, known dataset equal hand-computed values; every plot renders (also on an
empty database) and is cached until the data changes; the gate audit samples, decides and counts.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.test import override_settings

from review.models import ItemStatus, ReviewDecision, ReviewItem, Vote
from review.services import vote_cast
from synthesis import plots
from synthesis.models import (
    Batch,
    Character,
    Frame,
    FrameCharacter,
    GateAttempt,
    ModelCall,
    StatusChange,
    Story,
    StoryCast,
)
from synthesis.services import statistics as stats
from synthesis.services.gate_audit import frame_audit_maybe_open, wilson_interval
from synthesis.states import (
    ApprovalPath,
    AttemptKind,
    AttemptStatus,
    AuditStatus,
    BatchKind,
    CallStatus,
    CharacterStatus,
    FrameStatus,
    StoryStatus,
)

pytestmark = pytest.mark.django_db
_keys = itertools.count()
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    cache.clear()


def _character(batch: Batch, i: int, status: str, subject: str, profession: str) -> Character:
    return Character.objects.create(
        batch=batch,
        index=i,
        cid=f"C-{batch.pk}-{i}",
        status=status,
        subject_category=subject,
        subject_type="x",
        profession_category=profession,
        profession="y",
    )


def _attempt(kind: str, number: int, status: str, **subject: Any) -> GateAttempt:
    return GateAttempt.objects.create(
        kind=kind,
        number=number,
        action="initial" if number == 1 else "apt",
        status=status,
        prompt_name="p",
        prompt_version="1",
        prompt_text="t",
        **subject,
    )


def _decided_item(stage: str, subject_id: int, votes: list[str], experts: list[Any]) -> None:
    winner = max(set(votes), key=votes.count)
    item = ReviewItem.objects.create(
        stage=stage,
        subject_id=subject_id,
        status=ItemStatus.DECIDED,
        decided_choice=winner,
        votes_count=len(votes),
    )
    made = [
        Vote.objects.create(
            item=item,
            expert=experts[k],
            stage=stage,
            choice=choice,
            idempotency_key=f"k{next(_keys)}",
        )
        for k, choice in enumerate(votes)
    ]
    ReviewDecision.objects.create(
        item=item, stage=stage, subject_id=subject_id, choice=winner, deciding_vote=made[-1]
    )


@pytest.fixture
def dataset(make_user: Any) -> dict[str, Any]:
    from synthesis.vocabulary import load_taxonomy

    taxonomy = load_taxonomy()
    s0, s1 = (c.id for c in taxonomy.subject_categories[:2])
    p0, p1 = (c.id for c in taxonomy.profession_categories[:2])
    cbatch = Batch.objects.create(kind=BatchKind.CHARACTERS, requested=5)
    chars = [
        _character(cbatch, 0, CharacterStatus.LOCKED, s0, p0),
        _character(cbatch, 1, CharacterStatus.LOCKED, s0, p0),
        _character(cbatch, 2, CharacterStatus.LOCKED, s1, p1),
        _character(cbatch, 3, CharacterStatus.REJECTED, s1, p0),  # not locked: not counted
        _character(cbatch, 4, CharacterStatus.DISCARDED, s0, p1),
    ]
    sbatch = Batch.objects.create(kind=BatchKind.STORIES, requested=3)
    story = Story.objects.create(
        batch=sbatch, index=0, status=StoryStatus.APPROVED, genre="g", script={"frames": [{}] * 11}
    )
    StoryCast.objects.create(story=story, character=chars[0], order=0)
    StoryCast.objects.create(story=story, character=chars[1], order=1)
    two = Story.objects.create(
        batch=sbatch,
        index=1,
        status=StoryStatus.PENDING_HV2,
        genre="g",
        script={"frames": [{}] * 7},
    )
    StoryCast.objects.create(story=two, character=chars[2], order=0)
    Story.objects.create(batch=sbatch, index=2, status=StoryStatus.DROPPED, genre="g")

    # Ten frames at rest: 7 approved by the gate (one of them after an HV3 regeneration), 1
    # approved by an HV3 upload, 1 hard-failed, 1 discarded; and one still rendering.
    frames = []
    for i in range(11):
        status, path = FrameStatus.APPROVED, ApprovalPath.GATE
        if i == 7:
            path = ApprovalPath.HV3_UPLOAD
        elif i == 8:
            status, path = FrameStatus.HARD_FAILED, ""
        elif i == 9:
            status, path = FrameStatus.DISCARDED, ""
        elif i == 10:
            status, path = FrameStatus.RENDERING, ""
        frames.append(
            Frame.objects.create(
                story=story, index=i, frame_text=f"f{i}", status=status, approval_path=path
            )
        )
    StatusChange.objects.create(
        model="frame", object_id=frames[3].pk, old="rendering", new="hard_failed"
    )
    # Audit: 3 confirmed, 1 rejected, 1 pending.
    for frame, audit in zip(frames[:5], ["confirmed"] * 3 + ["rejected", "pending"], strict=True):
        Frame.objects.filter(pk=frame.pk).update(audit=audit)

    # Frame attempts: frame 0 passed at once; frame 1 failed (global) then failed (local) then
    # passed.  IQCC: pass 2, global 1, local 1.  Attempts per resting frame: 1, 3, then 0s.
    _attempt(AttemptKind.FRAME, 1, AttemptStatus.PASSED, frame=frames[0])
    g = _attempt(AttemptKind.FRAME, 1, AttemptStatus.FAILED, frame=frames[1])
    GateAttempt.objects.filter(pk=g.pk).update(error_scope="global")
    lo = _attempt(AttemptKind.FRAME, 2, AttemptStatus.FAILED, frame=frames[1])
    GateAttempt.objects.filter(pk=lo.pk).update(error_scope="local")
    _attempt(AttemptKind.FRAME, 3, AttemptStatus.PASSED, frame=frames[1])

    # References: A fails twice then passes (3), B fails once then passes (2), C passes (1).
    refs = [
        FrameCharacter.objects.create(
            frame=frames[0], character=chars[k], slot=k, pid="p", eid="e", ctag="c"
        )
        for k in range(3)
    ]
    for ref, outcomes in zip(
        refs, [["failed", "failed", "passed"], ["failed", "passed"], ["passed"]], strict=True
    ):
        for n, outcome in enumerate(outcomes, start=1):
            a = _attempt(AttemptKind.REFERENCE, n, outcome, reference=ref)
            GateAttempt.objects.filter(pk=a.pk).update(
                score_overall=8.0 if outcome == "passed" else 5.0
            )

    # Money: 10 synthesizer calls at 0.039, 10 arbitrator calls at 0.01, 4 free planner calls.
    for _ in range(10):
        ModelCall.objects.create(
            role="frame_synthesizer",
            provider="gemini",
            model="gemini-2.5-flash-image",
            status=CallStatus.OK,
            cost_usd=Decimal("0.039"),
            latency_ms=1000,
        )
        ModelCall.objects.create(
            role="arbitrator",
            provider="openai",
            model="gpt-4o",
            status=CallStatus.OK,
            cost_usd=Decimal("0.01"),
            latency_ms=500,
        )
    for ms in (100, 200, 300, 400):
        ModelCall.objects.create(
            role="planner",
            provider="sim",
            model="sim-text",
            status=CallStatus.OK,
            cost_usd=Decimal(0),
            latency_ms=ms,
        )

    # HV1 votes on 4 decided items: [3,0], [2,1], [0,3], [2,1] (approve, reject).
    experts = [make_user(f"exp{k}") for k in range(3)]
    for i, votes in enumerate(
        [
            ["approve"] * 3,
            ["approve", "reject", "approve"],
            ["reject"] * 3,
            ["reject", "approve", "approve"],
        ]
    ):
        _decided_item("hv1", 100 + i, votes, experts)
    return {"frames": frames, "chars": chars, "s": (s0, s1), "p": (p0, p1)}


def test_known_dataset_matches_hand_computed_values(dataset: dict[str, Any]) -> None:
    figures = stats.statistics_all(use_cache=False)

    # Fleiss: P̄ = (1 + 1/3 + 1 + 1/3)/4 = 2/3; p = (7/12, 5/12), Pe = 74/144;
    # κ = (2/3 - 74/144) / (1 - 74/144) = 11/35.
    hv1 = next(k for k in figures["kappa"] if k["stage"] == "hv1")
    assert hv1["items"] == 4 and hv1["votes"] == 12
    assert hv1["kappa"] == pytest.approx(11 / 35)

    # HV3 escalation: frames 3 (regenerated), 7 (upload), 8 (hard-failed), 9 (discarded) of 10.
    assert figures["hv3_escalation"] == {"frames": 10, "escalated": 4, "rate": pytest.approx(0.4)}

    # APT: references that failed once took 3 and 2 iterations: mean 2.5.
    assert figures["apt"]["mean"] == pytest.approx(2.5)
    assert figures["apt"]["failed_once"] == 2
    assert figures["apt"]["histogram"] == {"1": 1, "2": 1, "3": 1}

    # Cost: (10 × 0.039 + 10 × 0.01) / 8 approved frames = 0.06125.
    cost = figures["cost_per_approved_frame"]
    assert cost["approved_frames"] == 8
    assert cost["per_frame_usd"] == pytest.approx(0.49 / 8)
    by = {(r["provider"], r["role"]): r["per_frame_usd"] for r in cost["by"]}
    assert by[("gemini", "frame_synthesizer")] == pytest.approx(0.39 / 8)
    assert by[("openai", "arbitrator")] == pytest.approx(0.1 / 8)
    assert by[("sim", "planner")] == 0

    assert figures["iqcc_outcomes"] == {"pass": 2, "global": 1, "local": 1, "other": 0}
    assert figures["attempts_per_frame"]["histogram"] == {"0": 8, "1": 1, "3": 1}
    planner = next(r for r in figures["latency"] if r["role"] == "planner")
    assert (planner["p50"], planner["calls"]) == (250, 4)

    heat = figures["heatmap"]
    s0, s1 = dataset["s"]
    p0, p1 = dataset["p"]
    cell = heat["counts"][heat["subjects"].index(s0)][heat["professions"].index(p0)]
    assert cell == 2 and heat["total"] == 3
    assert heat["counts"][heat["subjects"].index(s1)][heat["professions"].index(p1)] == 1
    assert figures["characters_per_story"] == {"1": 1, "2": 1, "3": 0, "4": 0, "5": 0}
    assert figures["frames_per_story"] == {"7": 1, "11": 1}

    gates = {r["stage"]: r for r in figures["pass_rate_stage"]}
    assert (gates["gate:frame"]["passed"], gates["gate:frame"]["total"]) == (2, 4)
    assert (gates["gate:reference"]["passed"], gates["gate:reference"]["total"]) == (3, 6)
    assert gates["hv1"]["rate"] == pytest.approx(0.75)  # decided: approve ×3, reject ×1

    # Audit: 1 rejected of 4 decided; the 95% Wilson interval of 1/4 is (0.0456, 0.6994).
    audit = figures["audit"]
    assert (audit["rejected"], audit["decided"], audit["pending"]) == (1, 4, 1)
    assert audit["false_accept_rate"] == pytest.approx(0.25)
    assert audit["ci95"] == pytest.approx([0.0456, 0.6994], abs=5e-4)


def test_wilson_interval_edges() -> None:
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 20) or (None, None)
    assert low == 0 and high == pytest.approx(0.1611, abs=5e-4)


@pytest.mark.parametrize("name", list(plots.PLOTS))
def test_every_plot_renders_on_an_empty_database(name: str) -> None:
    png = plots.plot_png(name)
    assert png.startswith(PNG) and len(png) > 1000


def test_every_plot_renders_on_data(dataset: dict[str, Any]) -> None:
    for name in plots.PLOTS:
        assert plots.plot_png(name).startswith(PNG), name


def test_plots_are_cached_until_the_data_changes(
    dataset: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[str] = []
    real = plots.render_plot
    monkeypatch.setattr(plots, "render_plot", lambda n, s: drawn.append(n) or real(n, s))
    plots.plot_png("kappa")
    plots.plot_png("kappa")
    assert drawn == ["kappa"]
    frame = dataset["frames"][10]
    StatusChange.objects.create(model="frame", object_id=frame.pk, old="rendering", new="approved")
    plots.plot_png("kappa")
    assert drawn == ["kappa", "kappa"]


def _gate_approved_frame() -> Frame:
    batch = Batch.objects.create(kind=BatchKind.STORIES, requested=1)
    story = Story.objects.create(batch=batch, index=0, status=StoryStatus.APPROVED, genre="g")
    return Frame.objects.create(
        story=story,
        index=0,
        frame_text="t",
        status=FrameStatus.APPROVED,
        approval_path=ApprovalPath.GATE,
    )


def test_audit_samples_and_experts_decide(make_user: Any) -> None:
    frame = _gate_approved_frame()
    assert not frame_audit_maybe_open(frame, rate=0.0)
    assert frame_audit_maybe_open(frame, rate=1.0)
    assert not frame_audit_maybe_open(frame, rate=1.0)  # once only
    frame.refresh_from_db()
    assert frame.audit == AuditStatus.PENDING
    item = ReviewItem.objects.get(stage="audit", subject_id=frame.pk)
    for k in range(2):
        vote_cast(
            item_id=item.pk,
            expert=make_user(f"aud{k}"),
            choice="reject",
            idempotency_key=f"audit-{k}",
        )
    frame.refresh_from_db()
    assert frame.audit == AuditStatus.REJECTED
    figures = stats.statistics_all()
    assert figures["audit"]["rejected"] == 1
    assert figures["audit"]["rejected_frames"][0]["frame"] == frame.pk


def test_audit_rate_setting_samples_about_that_share() -> None:
    from synthesis.services.gate_audit import audit_sampled

    with override_settings(HILAPP_AUDIT_RATE=0.2):
        share = sum(audit_sampled(i) for i in range(5000)) / 5000
    assert 0.17 < share < 0.23


def test_only_gate_approvals_are_audited() -> None:
    frame = _gate_approved_frame()
    Frame.objects.filter(pk=frame.pk).update(approval_path=ApprovalPath.HV3_UPLOAD)
    frame.refresh_from_db()
    assert not frame_audit_maybe_open(frame, rate=1.0)
    assert not ReviewItem.objects.filter(stage="audit").exists()


def _item_with_dwell(
    stage: str, subject_id: int, votes: list[tuple[Any, str, int]], *, decided: bool = True
) -> ReviewItem:
    """A review item with votes whose dwell times (seconds) are known; decided by the last."""
    item = ReviewItem.objects.create(stage=stage, subject_id=subject_id, votes_count=len(votes))
    made = [
        Vote.objects.create(
            item=item,
            expert=expert,
            stage=stage,
            choice=choice,
            idempotency_key=f"k{next(_keys)}",
            dwell_ms=seconds * 1000,
        )
        for expert, choice, seconds in votes
    ]
    if decided:
        item.status, item.decided_choice = ItemStatus.DECIDED, made[-1].choice
        item.save()
        ReviewDecision.objects.create(
            item=item,
            stage=stage,
            subject_id=subject_id,
            choice=made[-1].choice,
            deciding_vote=made[-1],
        )
    return item


def test_expert_effort_on_known_votes_and_dwell_times(make_user: Any, client: Any) -> None:
    from review.models import EventKind, ReviewEvent

    e1, e2, e3 = (make_user(f"effort{n}") for n in (1, 2, 3))
    a = _item_with_dwell("hv1", 1, [(e1, "approve", 10), (e2, "approve", 20)])
    _item_with_dwell("hv1", 2, [(e1, "approve", 30), (e2, "reject", 40), (e3, "reject", 50)])
    _item_with_dwell("hv2", 3, [(e1, "approve", 60), (e3, "approve", 120)])
    # An open item's votes stay out (blind until decided), however long they took.
    _item_with_dwell("hv1", 4, [(e1, "approve", 999)], decided=False)
    # e3 held a seat on item a when it was decided: a wasted look.
    ReviewEvent.objects.create(
        item=a, expert=e3, kind=EventKind.LEASE_RELEASED, data={"reason": "decided"}
    )
    batch = Batch.objects.create(kind=BatchKind.STORIES, requested=1)
    story = Story.objects.create(batch=batch, index=0, status=StoryStatus.COMPLETE, genre="g")
    for i in range(3):
        Frame.objects.create(
            story=story, index=i, frame_text="t", status=FrameStatus.APPROVED, approval_path="gate"
        )

    effort = stats.expert_effort()
    by = {s["stage"]: s for s in effort["stages"]}
    hv1, hv2 = by["hv1"], by["hv2"]
    assert (hv1["decided"], hv1["votes"], hv1["wasted_looks"]) == (2, 5, 1)
    assert hv1["looks_per_decided"] == 3.0 and hv1["wasted_per_decided"] == 0.5
    assert hv1["median_dwell_s"] == 30 and hv1["mean_dwell_s"] == 30
    assert hv1["expert_seconds"] == 6 * 30  # six looks at the mean dwell
    assert (hv2["looks_per_decided"], hv2["median_dwell_s"], hv2["expert_seconds"]) == (
        2.0,
        90,
        180,
    )
    assert by["hv3"]["looks_per_decided"] is None and by["hv3"]["median_dwell_s"] is None
    assert effort["approved_frames"] == 3
    assert effort["expert_seconds_per_approved_frame"] == (180 + 180) / 3
    experts = {x["expert"]: x for x in effort["experts"]}
    assert experts["effort1"]["median_dwell_s"] == 30
    assert experts["effort1"]["median_dwell_s_by_stage"] == {"hv1": 20, "hv2": 60}
    assert experts["effort3"]["median_dwell_s"] == 85
    assert experts["effort1"]["votes"] == 3  # the open item's vote is not counted

    projection = effort["projection"]
    rows = {r["stage"]: r for r in projection["stages"]}
    assert projection["frames_per_story"] == 3 and projection["frames"] == 30_000
    assert rows["hv1"]["expert_hours"] == 2000 * 3.0 * 30 / 3600  # 50 h
    assert rows["hv2"]["expert_hours"] == 10_000 * 2.0 * 90 / 3600  # 500 h
    assert rows["hv3"]["items"] == 0 and rows["hv3"]["expert_hours"] is None
    assert projection["expert_hours"] == 550

    # The page and the API show them to an admin.
    client.force_login(make_user("effort-admin", role="admin"))
    body = client.get("/synthesis/statistics/").content.decode()
    assert 'id="expert-effort"' in body and 'id="effort-per-frame">120.0 expert-seconds' in body
    assert 'id="effort-total-hours">550.0<' in body
    api = client.get("/api/v1/statistics/expert_effort/").json()
    assert api["expert_effort"]["projection"]["expert_hours"] == 550
