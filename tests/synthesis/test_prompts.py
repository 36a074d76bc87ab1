"""Every prompt template renders with realistic context and states its answer shape."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.template import Context, Engine
from pydantic import BaseModel

from synthesis import prompts
from synthesis.prompts import (
    TEMPLATES_DIR,
    PromptNotFound,
    prompt_names,
    prompt_version,
    render_prompt,
)
from synthesis.schemas import AptAnswer, CharacterConcept, IqccReport, ScoreAnswer, StoryScript
from synthesis.vocabulary import load_vocabulary

FOX_DESCRIPTION = (
    "An anthropomorphic red fox with a slender build and a bushy white-tipped tail, amber eyes "
    "and round brass spectacles, wearing a long teal lab coat over a mustard waistcoat, brown "
    "leather boots, a satchel of glass vials at the hip; stylized illustration, clean lines."
)
OWL_DESCRIPTION = (
    "A round snowy owl with speckled grey-white feathers and huge golden eyes, wearing a "
    "midnight-blue wizard robe embroidered with silver stars and a crooked pointed hat, "
    "holding a gnarled oak staff; stylized illustration, soft shading."
)
FOX = {"cid": "CID-0001", "name": "Professor Ember", "visual_description": FOX_DESCRIPTION}
OWL = {"cid": "CID-0002", "name": "Nimbus", "visual_description": OWL_DESCRIPTION}


def _frame_characters() -> list[dict[str, Any]]:
    return [
        {
            **FOX,
            "pose": _control("pose.pointing"),
            "expression": _control("expr.determined"),
            "composition": _control("comp.two_shot"),
            "reference_index": 1,
        },
        {
            **OWL,
            "pose": _control("pose.casting_spell"),
            "expression": _control("expr.surprised"),
            "composition": _control("comp.two_shot"),
            "reference_index": 2,
        },
    ]


def _control(control_id: str) -> dict[str, str]:
    return {"id": control_id, "description": load_vocabulary().describe(control_id)}


def _story_context() -> dict[str, Any]:
    return {
        "genre": "fantasy adventure",
        "characters": [FOX, OWL],
        **load_vocabulary().as_prompt_lists(),
        "min_frames": 7,
        "max_frames": 12,
    }


def _contexts() -> dict[str, dict[str, Any]]:
    frame = {
        "genre": "fantasy adventure",
        "frame_text": (
            "In a moonlit library, Professor Ember points at a glowing map while Nimbus "
            "conjures a swirl of stars above the reading table."
        ),
        "characters": _frame_characters(),
    }
    return {
        "character_concept": {
            "subject_type": "red fox",
            "subject_category": "Mammals",
            "profession": "alchemist",
            "profession_category": "Magic / mystery / belief",
        },
        "character_render": {
            "name": "Professor Ember",
            "visual_description": FOX_DESCRIPTION,
            "palette": ["#c8502a", "#1f7a7a", "#e0b040"],
            "subject_type": "red fox",
            "profession": "alchemist",
        },
        "viescore_t2i_sc": {"prompt": f"Character identity sheet. {FOX_DESCRIPTION}"},
        "viescore_t2i_pq": {},
        "viescore_edit_sc": {"instruction": "Make the fox wave with one raised open hand."},
        "viescore_edit_pq": {},
        "story_script": _story_context(),
        "story_repair": {
            **_story_context(),
            "previous_script": json.dumps(
                {
                    "title": "The Star Map",
                    "frames": [
                        {
                            "frame_text": "Ember finds a map.",
                            "characters": [
                                {
                                    "cid": "CID-0001",
                                    "pid": "pose.moonwalk",
                                    "eid": "expr.happy",
                                    "ctag": "comp.close_up",
                                }
                            ],
                        }
                    ],
                }
            ),
            "errors": [
                "frames: 1 frame, expected between 7 and 12",
                "frame 1, CID-0001: unknown pose id 'pose.moonwalk'",
                "character CID-0002 never appears",
            ],
        },
        "reference_edit": {
            "name": "Professor Ember",
            "visual_description": FOX_DESCRIPTION,
            "pose": _control("pose.waving"),
            "expression": _control("expr.happy"),
        },
        "apt": {
            "stage": "reference",
            "original_prompt": "Edit this fox so that it waves happily.",
            "failure_report": "VIEScore 5.2: the arm is not raised; the coat turned red.",
        },
        "frame_synthesis": frame,
        "iqcc": frame,
        "lie": {
            "instruction": "Make Nimbus's eyes wide open with raised brows; keep all else.",
            "frame_text": frame["frame_text"],
        },
    }


ANSWER_SCHEMAS: dict[str, type[BaseModel]] = {
    "character_concept": CharacterConcept,
    "viescore_t2i_sc": ScoreAnswer,
    "viescore_t2i_pq": ScoreAnswer,
    "viescore_edit_sc": ScoreAnswer,
    "viescore_edit_pq": ScoreAnswer,
    "story_script": StoryScript,
    "story_repair": StoryScript,
    "apt": AptAnswer,
    "iqcc": IqccReport,
}


def _text(template: str, context: dict[str, Any]) -> str:
    """Render like render_prompt does, but make an unknown variable loud instead of empty."""
    engine = Engine(dirs=[str(TEMPLATES_DIR)], autoescape=False, string_if_invalid="@@%s@@")
    text = engine.get_template(f"{template}.txt").render(Context(context, autoescape=False))
    assert "@@" not in text, re.findall(r"@@[^@]*@@", text)
    return text.strip() + "\n"


def test_the_expected_templates_exist() -> None:
    assert set(prompt_names()) == set(_contexts())


@pytest.mark.parametrize("template", sorted(_contexts()))
def test_every_template_renders_every_variable(template: str) -> None:
    text = _text(template, _contexts()[template])
    assert len(text) > 200
    assert "{{" not in text and "{%" not in text and "&#" not in text


@pytest.mark.parametrize("template", sorted(_contexts()))
def test_render_prompt_renders_every_template(template: str) -> None:
    context = _contexts()[template]
    rendered = render_prompt(template, **context)
    assert rendered.name == template
    assert re.fullmatch(r"[0-9a-f]{12}", rendered.version)
    assert rendered.version == prompt_version(template)
    assert rendered.text == _text(template, context)


def test_prompts_are_not_html_escaped() -> None:
    text = render_prompt("lie", instruction="Fix the fox's <left> arm & hat", frame_text="x").text
    assert "Fix the fox's <left> arm & hat" in text


@pytest.mark.parametrize("name", sorted(ANSWER_SCHEMAS))
def test_json_prompts_state_the_shape_of_their_schema(name: str) -> None:
    text = _text(name, _contexts()[name])
    assert "Answer with JSON only" in text
    for field in ANSWER_SCHEMAS[name].model_fields:
        assert f'"{field}"' in text, field
    if name in ("story_script", "story_repair"):
        for field in ("frame_text", "cid", "pid", "eid", "ctag"):
            assert f'"{field}"' in text
    if name == "iqcc":
        for key in ("verdict", "reasons", "pass", "fail", "none", "global", "local"):
            assert key in text


def test_story_script_lists_the_characters_and_the_whole_vocabulary() -> None:
    text = _text("story_script", _story_context())
    assert FOX_DESCRIPTION in text and OWL_DESCRIPTION in text
    assert "CID-0001" in text and "CID-0002" in text
    vocabulary = load_vocabulary()
    for table in (vocabulary.poses, vocabulary.expressions, vocabulary.compositions):
        for control in table.values():
            assert f"{control.id}: {control.description}" in text
    assert "between 7 and 12 frames" in text


def test_story_repair_quotes_the_errors_and_the_previous_script() -> None:
    context = _contexts()["story_repair"]
    text = _text("story_repair", context)
    for error in context["errors"]:
        assert error in text
    assert context["previous_script"] in text
    assert "pose.arms_crossed" in text


def test_character_prompts_carry_the_description() -> None:
    contexts = _contexts()
    render = _text("character_render", contexts["character_render"])
    assert FOX_DESCRIPTION in render
    assert "#c8502a, #1f7a7a, #e0b040" in render
    for requirement in ("full body", "white background", "No text", "1024x1024", "centered"):
        assert requirement in render
    edit = _text("reference_edit", contexts["reference_edit"])
    assert FOX_DESCRIPTION in edit
    assert "pose.waving" in edit and load_vocabulary().describe("expr.happy") in edit


def test_frame_prompts_point_each_character_to_its_reference() -> None:
    for name in ("frame_synthesis", "iqcc"):
        text = _text(name, _contexts()[name])
        assert "reference image 1: " + FOX_DESCRIPTION in text
        assert "reference image 2: " + OWL_DESCRIPTION in text
        assert load_vocabulary().describe("pose.casting_spell") in text
        assert load_vocabulary().describe("comp.two_shot") in text


def test_apt_names_the_stage() -> None:
    context = _contexts()["apt"]
    reference = _text("apt", context)
    frame = _text("apt", {**context, "stage": "frame"})
    assert "reference image" in reference and "story frame" in frame
    assert context["failure_report"] in reference


@pytest.fixture
def templates_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, directory)
    monkeypatch.setattr(prompts, "TEMPLATES_DIR", directory)
    prompt_version.cache_clear()
    prompts._engine.cache_clear()
    yield directory
    prompt_version.cache_clear()
    prompts._engine.cache_clear()


def test_version_is_a_content_hash(templates_copy: Path) -> None:
    before = prompt_version("lie")
    assert re.fullmatch(r"[0-9a-f]{12}", before)
    path = templates_copy / "lie.txt"
    path.write_text(path.read_text() + "\nBe careful.\n")
    prompt_version.cache_clear()
    after = prompt_version("lie")
    assert re.fullmatch(r"[0-9a-f]{12}", after)
    assert after != before
    assert prompt_version("apt") != after


def test_unknown_template_is_prompt_not_found() -> None:
    with pytest.raises(PromptNotFound, match="no_such_prompt"):
        render_prompt("no_such_prompt")
