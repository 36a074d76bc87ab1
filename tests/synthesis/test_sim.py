"""The offline simulator: deterministic for a seed, and each fault kind at its configured rate."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from hilapp.imaging import from_png
from synthesis.prompts import RenderedPrompt
from synthesis.providers.base import ErrorKind, ImageRequest, ProviderError, Role, TextRequest
from synthesis.providers.sim import (
    FAULTS,
    GLOBAL_FRAME_FAULTS,
    LOCAL_FRAME_FAULTS,
    SimConfigError,
    SimImageModel,
    SimTextModel,
    image_faults,
    parse_fault_spec,
)
from synthesis.schemas import CharacterConcept, ErrorScope, IqccReport, ScoreAnswer, StoryScript

PROMPT = RenderedPrompt("test", "000000000000", "draw a character")
FIGURE = {
    "cid": "C1-00001",
    "name": "Kalo",
    "palette": ["#aa3311", "#33aa11", "#1133aa"],
    "category": "mammal",
    "pose_id": "pose.waving",
    "expression_id": "expr.happy",
}
FRAME = {
    "figures": [FIGURE, {**FIGURE, "cid": "C1-00002", "name": "Miro"}],
    "frame_text": "They meet at the market.",
    "composition_ids": ["comp.medium_shot"],
}
N = 400


def _image_model(faults: dict[str, float], seed: int = 7) -> SimImageModel:
    return SimImageModel("sim-image", {"faults": faults, "seed": seed})


def _text_model(faults: dict[str, float], seed: int = 7) -> SimTextModel:
    return SimTextModel("sim-text", {"faults": faults, "seed": seed})


def _frame(model: SimImageModel, key: str, size: int = 128) -> bytes:
    request = ImageRequest(
        role=Role.FRAME_SYNTHESIZER, prompt=PROMPT, size=(size, size), seed_key=key, subject=FRAME
    )
    return model.generate(request).image


def test_same_seed_same_outputs_other_seed_other_outputs() -> None:
    a = [_frame(_image_model({"wrong_pose": 0.5}, seed=1), f"k{i}") for i in range(5)]
    b = [_frame(_image_model({"wrong_pose": 0.5}, seed=1), f"k{i}") for i in range(5)]
    c = [_frame(_image_model({"wrong_pose": 0.5}, seed=2), f"k{i}") for i in range(5)]
    assert a == b
    assert a != c


def test_templates_are_1024_white_pngs() -> None:
    request = ImageRequest(
        role=Role.CHARACTER_RENDERER,
        prompt=PROMPT,
        size=(1024, 1024),
        seed_key="t",
        subject={"figure": FIGURE},
    )
    image = from_png(_image_model({}).generate(request).image)
    assert image.size == (1024, 1024)
    assert image.getpixel((2, 2)) == (255, 255, 255)


@pytest.mark.parametrize("kind", GLOBAL_FRAME_FAULTS + LOCAL_FRAME_FAULTS)
def test_each_frame_fault_hits_at_its_rate(kind: str) -> None:
    model = _image_model({kind: 0.3})
    hits = sum(
        kind in image_faults(_frame(model, f"{kind}{i}", size=64))["faults"] for i in range(N)
    )
    assert 0.24 * N <= hits <= 0.36 * N, hits


def test_low_viescore_hits_templates_and_references_at_its_rate() -> None:
    model = _image_model({"low_viescore": 0.3})
    for role, subject in (
        (Role.CHARACTER_RENDERER, {"figure": FIGURE}),
        (Role.REFERENCE_EDITOR, {"figure": FIGURE}),
    ):
        hits = 0
        for i in range(N):
            request = ImageRequest(
                role=role, prompt=PROMPT, size=(64, 64), seed_key=f"r{i}", subject=subject
            )
            hits += bool(image_faults(model.generate(request).image)["faults"])
        assert 0.24 * N <= hits <= 0.36 * N, (role, hits)


def _ask(model: SimTextModel, schema: Any, key: str, **kw: Any) -> Any:
    request = TextRequest(
        role=Role.JUDGE, prompt=kw.pop("prompt", PROMPT), schema=schema, seed_key=key, **kw
    )
    return model.complete_json(request).data


def test_transient_errors_and_malformed_answers_at_their_rates() -> None:
    errors = Counter()
    model = _text_model({"transient_error": 0.2, "malformed_output": 0.2})
    subject = {"subject_type": "red fox", "profession": "baker"}
    for i in range(N):
        try:
            _ask(model, CharacterConcept, f"c{i}", subject=subject)
            errors["ok"] += 1
        except ProviderError as exc:
            errors[exc.kind] += 1
    assert 0.15 * N <= errors[ErrorKind.SERVER] <= 0.25 * N, errors
    # Malformed is drawn only for calls that got past the transient error (0.8 of them).
    assert 0.11 * N <= errors[ErrorKind.MALFORMED] <= 0.21 * N, errors


def test_the_judge_sees_injected_faults_and_errs_at_its_rates() -> None:
    clean = _frame(_image_model({}), "clean")
    faulty = _frame(_image_model({"identity_drift": 1.0}), "faulty")
    judge = _text_model({})
    prompt = RenderedPrompt("iqcc", "0", "check")
    report = _ask(judge, IqccReport, "j", prompt=prompt, images=[faulty], subject=FRAME)
    assert report.error_scope == ErrorScope.GLOBAL and not report.passed
    assert _ask(judge, IqccReport, "j", prompt=prompt, images=[clean], subject=FRAME).passed
    lenient = _text_model({"judge_false_accept": 0.5})
    accepted = sum(
        _ask(lenient, IqccReport, f"a{i}", prompt=prompt, images=[faulty], subject=FRAME).passed
        for i in range(N)
    )
    assert 0.42 * N <= accepted <= 0.58 * N
    sc_prompt = RenderedPrompt("viescore_t2i_sc", "0", "score")
    strict = _text_model({"judge_false_reject": 0.3})
    low = sum(
        _ask(strict, ScoreAnswer, f"s{i}", prompt=sc_prompt, images=[clean]).minimum() < 7
        for i in range(N)
    )
    assert 0.24 * N <= low <= 0.36 * N


def test_invalid_scripts_at_their_rate() -> None:
    from synthesis.vocabulary import load_vocabulary

    vocab = load_vocabulary()
    model = _text_model({"invalid_script": 0.3})
    cids = ["C1-00001", "C1-00002"]
    bad = 0
    for i in range(200):
        script = _ask(
            model,
            StoryScript,
            f"s{i}",
            prompt=RenderedPrompt("story_script", "0", "x"),
            subject={"cids": cids, "min_frames": 7, "max_frames": 12},
        )
        ok = 7 <= len(script.frames) <= 12 and all(
            c.cid in cids
            and c.pid in vocab.poses
            and c.eid in vocab.expressions
            and c.ctag in vocab.compositions
            and len({x.cid for x in f.characters}) == len(f.characters)
            for f in script.frames
            for c in f.characters
        )
        bad += not ok
    assert 0.2 * 200 <= bad <= 0.4 * 200


def test_fault_specs_are_validated() -> None:
    assert parse_fault_spec("low_viescore=0.3, wrong_pose=0.1") == {
        "low_viescore": 0.3,
        "wrong_pose": 0.1,
    }
    with pytest.raises(SimConfigError, match="unknown fault kind 'nope'"):
        parse_fault_spec("nope=0.1")
    with pytest.raises(SimConfigError, match="between 0 and 1"):
        parse_fault_spec("low_viescore=1.5")
    with pytest.raises(SimConfigError, match="not a number"):
        parse_fault_spec("low_viescore=lots")
    assert set(FAULTS) >= set(GLOBAL_FRAME_FAULTS + LOCAL_FRAME_FAULTS)
