"""Phase I: character identity templates (CIDs).

launch → draft the concept (planner, Character Meta Prompt) → render the template (character
renderer, standardized to 1024×1024 on white) → VIEScore gate: below the threshold the concept
is discarded with its reason; otherwise an HV1 review item opens. HV1 locks or rejects the CID.
"""

from __future__ import annotations

import random
from typing import Any

from django.conf import settings
from django.db import transaction

from hilapp.imaging import from_png, png_header, png_metadata, standardize_template, to_png
from review.services import review_item_open
from synthesis import dispatch
from synthesis.artifacts import read_bytes
from synthesis.gate import (
    GatePolicy,
    Judgement,
    Produced,
    Retry,
    attempt_prompt,
    gate_start,
)
from synthesis.models import Batch, Character, GateAttempt
from synthesis.prompts import render_prompt
from synthesis.providers.base import ErrorKind, ImageRequest, ProviderError, Role, TextRequest
from synthesis.providers.calls import (
    CallContext,
    PlannedCall,
    call_image,
    call_text,
    queue_of,
)
from synthesis.schemas import CharacterConcept
from synthesis.services.batches import batch_accepts_work
from synthesis.services.judging import viescore_first_key, viescore_judge
from synthesis.services.launch_params import LaunchError, clean_launch
from synthesis.states import (
    AttemptAction,
    AttemptKind,
    BatchKind,
    BatchStatus,
    CharacterStatus,
)
from synthesis.transitions import transition
from synthesis.vocabulary import load_taxonomy


def batch_launch_characters(
    *,
    count: Any,
    seed: int = 0,
    budget_usd: Any = None,
    params: dict[str, Any] | None = None,
    created_by: Any = None,
) -> Batch:
    """Create a character batch and its drafts in one transaction; drafting starts on commit."""
    count, budget, cleaned = clean_launch(count=count, budget_usd=budget_usd, params=params)
    taxonomy = load_taxonomy()
    subject_filter = set(cleaned.get("subject_categories") or [])
    profession_filter = set(cleaned.get("profession_categories") or [])
    _check_filter(subject_filter, {c.id for c in taxonomy.subject_categories}, "subject")
    _check_filter(profession_filter, {c.id for c in taxonomy.profession_categories}, "profession")
    rng = random.Random(seed)
    with transaction.atomic():
        batch = Batch.objects.create(
            kind=BatchKind.CHARACTERS,
            seed=seed,
            requested=count,
            params=cleaned,
            budget_usd=budget,
            created_by=created_by,
        )
        characters = []
        for index in range(count):
            subject_cat, subject_type = _sample(rng, taxonomy.sample_subject, subject_filter)
            profession_cat, profession = _sample(rng, taxonomy.sample_profession, profession_filter)
            characters.append(
                Character(
                    batch=batch,
                    index=index,
                    cid=f"C{batch.pk}-{index:05d}",
                    subject_category=subject_cat.id,
                    subject_type=subject_type,
                    profession_category=profession_cat.id,
                    profession=profession,
                )
            )
        Character.objects.bulk_create(characters, batch_size=500)
        characters_send_draft(list(batch.characters.select_related("batch")))
    return batch


def _check_filter(chosen: set[str], known: set[str], what: str) -> None:
    unknown = chosen - known
    if unknown:
        raise LaunchError(f"unknown {what} categories {sorted(unknown)} (one of {sorted(known)})")


def _sample(rng: random.Random, sample: Any, allowed: set[str]) -> Any:
    while True:  # rejection sampling keeps the per-category balance within the filter
        category, item = sample(rng)
        if not allowed or category.id in allowed:
            return category, item


def seed_key(character: Character, part: str) -> str:
    """Stable request identity: the same batch seed and position give the same character."""
    return f"character:{character.index}:{part}"


def call_context(character: Character, attempt_id: int | None = None) -> CallContext:
    return CallContext.for_batch(
        character.batch, subject=f"character:{character.pk}", attempt_id=attempt_id
    )


def draft_call(character: Character) -> PlannedCall:
    return PlannedCall(Role.PLANNER, seed_key(character, "concept"), call_context(character))


def characters_send_draft(characters: list[Character]) -> None:
    """Send each character's drafting step to the queue of its planner (with batch loaded)."""
    for character in characters:
        dispatch.character_draft(character.pk, queue=queue_of(draft_call(character)))


def character_draft(*, character_id: int, here: str | None = None) -> bool:
    """Write the concept and open the first render attempt. False if there was nothing to do.

    Sent on to the planner's queue when it is not ``here`` (None: run here)."""
    character = Character.objects.select_related("batch").get(pk=character_id)
    if character.status != CharacterStatus.DRAFTING:
        return False
    if here is not None and character.batch.status == BatchStatus.RUNNING:
        queue = queue_of(draft_call(character))
        if queue != here:
            characters_send_draft([character])
            return False
    if character.batch.status == BatchStatus.CANCELLED:
        transition(
            Character,
            character.pk,
            old=CharacterStatus.DRAFTING,
            new=CharacterStatus.CANCELLED,
            reason="batch cancelled before drafting",
        )
        return False
    if not batch_accepts_work(character.batch):
        return False
    taxonomy = load_taxonomy()
    facts = {
        "subject_type": character.subject_type,
        "subject_category": taxonomy.subject_category_of(character.subject_type).label,
        "profession": character.profession,
        "profession_category": taxonomy.profession_category_of(character.profession).label,
    }
    request = TextRequest(
        role=Role.PLANNER,
        prompt=render_prompt("character_concept", **facts),
        schema=CharacterConcept,
        seed_key=draft_call(character).seed_key,
        subject=facts,
    )
    try:
        result, call = call_text(request, call_context(character))
    except ProviderError as exc:
        # A refusal, or an answer that never parsed, fails the concept with its reason: a
        # concept is never made up. Transient trouble and budget stops leave it waiting.
        if exc.kind == ErrorKind.MALFORMED or (exc.permanent and exc.kind != ErrorKind.BUDGET):
            transition(
                Character,
                character.pk,
                old=CharacterStatus.DRAFTING,
                new=CharacterStatus.FAILED,
                reason=f"planner: {exc}",
            )
            return False
        raise
    concept = result.data
    assert isinstance(concept, CharacterConcept)
    render = render_prompt(
        "character_render",
        name=concept.name,
        visual_description=concept.visual_description,
        palette=concept.palette,
        subject_type=character.subject_type,
        profession=character.profession,
    )
    with transaction.atomic():
        moved = transition(
            Character,
            character.pk,
            old=CharacterStatus.DRAFTING,
            new=CharacterStatus.RENDERING,
            reason="concept drafted",
            name=concept.name,
            visual_description=concept.visual_description,
            personality=concept.personality,
            palette=concept.palette,
            planner_model=call.model_label,
        )
        if moved:
            gate_start(
                CHARACTER_GATE,
                character,
                number=1,
                round_=1,
                plan=Retry(action=AttemptAction.INITIAL, prompt=render),
            )
    return moved


def figure_of(character: Character, **extra: Any) -> dict[str, Any]:
    """What the simulator needs to draw this character (real providers use the prompt)."""
    return {
        "cid": character.cid,
        "name": character.name,
        "palette": list(character.palette),
        "category": character.subject_category,
        **extra,
    }


def _judged_template(attempt: GateAttempt) -> dict[str, Any]:
    """What the character keeps of its judged template attempt, passed or not."""
    return {
        "template": attempt.image,
        "renderer_model": attempt.producer_model,
        "judge_model": attempt.judge_model,
        "viescore_sc": attempt.score_sc,
        "viescore_pq": attempt.score_pq,
        "viescore_overall": attempt.score_overall,
    }


class CharacterGate(GatePolicy):
    kind = AttemptKind.CHARACTER
    subject_field = "character"

    def load(self, subject_id: int) -> Character:
        return Character.objects.select_related("batch").get(pk=subject_id)

    def is_active(self, subject: Character) -> bool:
        return subject.status == CharacterStatus.RENDERING

    def max_attempts(self) -> int:
        return 1  # the paper discards a concept below the threshold; it does not retry it

    def produce_call(self, subject: Character, attempt: GateAttempt) -> PlannedCall:
        return PlannedCall(
            Role.CHARACTER_RENDERER,
            seed_key(subject, f"template:{attempt.number}"),
            call_context(subject, attempt.pk),
        )

    def judge_call(self, subject: Character, attempt: GateAttempt) -> PlannedCall:
        return PlannedCall(
            Role.JUDGE,
            viescore_first_key(seed_key(subject, f"judge:{attempt.number}")),
            call_context(subject, attempt.pk),
        )

    def retry_call(self, subject: Character, failed: GateAttempt) -> PlannedCall | None:
        return None  # never retried (max_attempts is 1)

    def produce(self, subject: Character, attempt: GateAttempt) -> Produced:
        size = settings.HILAPP_TEMPLATE_SIZE
        request = ImageRequest(
            role=Role.CHARACTER_RENDERER,
            prompt=attempt_prompt(attempt),
            size=(size, size),
            seed_key=self.produce_call(subject, attempt).seed_key,
            subject={"figure": figure_of(subject)},
        )
        result, call = call_image(request, call_context(subject, attempt.pk))
        return Produced(image=_standardized(result.image, size), model_label=call.model_label)

    def judge(self, subject: Character, attempt: GateAttempt) -> Judgement:
        return viescore_judge(
            mode="t2i",
            images=[read_bytes(attempt.image)],
            text=attempt.prompt_text,
            ctx=call_context(subject, attempt.pk),
            seed_key=seed_key(subject, f"judge:{attempt.number}"),
            threshold=settings.HILAPP_VIESCORE_THRESHOLD,
            strict=False,
        )

    def plan_retry(self, subject: Character, failed: GateAttempt) -> Retry:
        raise AssertionError("character templates are never retried")

    def on_pass(self, subject: Character, attempt: GateAttempt) -> None:
        moved = transition(
            Character,
            subject.pk,
            old=CharacterStatus.RENDERING,
            new=CharacterStatus.PENDING_HV1,
            reason=f"VIEScore {attempt.score_overall}",
            **_judged_template(attempt),
        )
        if moved:
            review_item_open(
                stage="hv1", subject_id=subject.pk, subject_label=f"{subject.cid} {subject.name}"
            )

    def on_exhausted(self, subject: Character, attempt: GateAttempt) -> None:
        report = attempt.report or {}
        judged = " ".join(
            f"{part.upper()}: {report[part].get('reasoning', '')}"
            for part in ("sc", "pq")
            if part in report
        )
        reason = (
            f"VIEScore {attempt.score_overall} < {settings.HILAPP_VIESCORE_THRESHOLD} "
            f"(SC {attempt.score_sc}, PQ {attempt.score_pq}). {judged}"
        ).strip()
        transition(
            Character,
            subject.pk,
            old=CharacterStatus.RENDERING,
            new=CharacterStatus.DISCARDED,
            reason=reason,
            **_judged_template(attempt),
        )

    def on_error(self, subject: Character, attempt: GateAttempt, error: ProviderError) -> None:
        transition(
            Character,
            subject.pk,
            old=CharacterStatus.RENDERING,
            new=CharacterStatus.FAILED,
            reason=attempt.error or str(error),
        )


CHARACTER_GATE = CharacterGate()


def _standardized(png: bytes, size: int) -> bytes:
    # The header says whether the render already is a size x size RGB PNG (the usual case):
    # then its bytes are kept untouched (the simulator's metadata too) and its pixels are not
    # decoded a second time (the adapter decoded them to validate the answer).
    header = png_header(png)
    if header.size == (size, size) and header.mode == "RGB":
        return png
    return to_png(standardize_template(from_png(png), size), png_metadata(png))


def character_apply_review(*, character_id: int, approved: bool, reason: str = "") -> bool:
    """HV1's decision: lock the CID or reject it (called once, inside the deciding transaction)."""
    return transition(
        Character,
        character_id,
        old=CharacterStatus.PENDING_HV1,
        new=CharacterStatus.LOCKED if approved else CharacterStatus.REJECTED,
        reason=reason or ("HV1 approved" if approved else "HV1 rejected"),
        actor="hv1",
    )
