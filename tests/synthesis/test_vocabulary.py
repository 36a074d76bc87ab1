"""The control vocabulary and the taxonomy: counts, formats, sampling, and broken files."""

from __future__ import annotations

import json
import random
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from synthesis.vocabulary import (
    COMPOSITION_COUNT,
    EXPRESSION_COUNT,
    POSE_COUNT,
    TAXONOMY_DIR,
    VOCABULARY_DIR,
    UnknownControlId,
    VocabularyFileError,
    load_taxonomy,
    load_vocabulary,
)

ID_FORMAT = {
    "poses": re.compile(r"^pose\.[a-z0-9_]+$"),
    "expressions": re.compile(r"^expr\.[a-z0-9_]+$"),
    "compositions": re.compile(r"^comp\.[a-z0-9_]+$"),
}


def test_control_space_has_the_papers_sizes() -> None:
    vocabulary = load_vocabulary()
    assert (POSE_COUNT, EXPRESSION_COUNT, COMPOSITION_COUNT) == (28, 12, 21)
    assert len(vocabulary.poses) == 28
    assert len(vocabulary.expressions) == 12
    assert len(vocabulary.compositions) == 21


def test_ids_are_unique_well_formed_and_described_on_one_line() -> None:
    lists = load_vocabulary().as_prompt_lists()
    all_ids = [entry["id"] for entries in lists.values() for entry in entries]
    assert len(all_ids) == len(set(all_ids)) == 28 + 12 + 21
    for kind, entries in lists.items():
        for entry in entries:
            assert set(entry) == {"id", "description"}
            assert ID_FORMAT[kind].match(entry["id"]), entry["id"]
            description = entry["description"]
            assert description.strip() == description
            assert description and "\n" not in description


def test_the_examples_of_the_design_exist() -> None:
    vocabulary = load_vocabulary()
    assert "folded" in vocabulary.describe("pose.arms_crossed")
    assert vocabulary.describe("expr.surprised")
    assert vocabulary.describe("comp.close_up")
    assert vocabulary.get("comp.close_up").id == "comp.close_up"


def test_unknown_control_id_is_a_clear_value_error() -> None:
    with pytest.raises(UnknownControlId, match=r"pose\.moonwalk"):
        load_vocabulary().describe("pose.moonwalk")
    assert issubclass(UnknownControlId, ValueError)


def test_default_vocabulary_is_cached() -> None:
    assert load_vocabulary() is load_vocabulary()
    assert load_taxonomy() is load_taxonomy()


def test_taxonomy_has_eight_subject_and_the_four_profession_categories() -> None:
    taxonomy = load_taxonomy()
    assert len(taxonomy.subject_categories) == 8
    subject_ids = {c.id for c in taxonomy.subject_categories}
    assert {"mammal", "mythology", "plant", "marine_life", "human"} <= subject_ids
    assert [(c.id, c.label) for c in taxonomy.profession_categories] == [
        ("knowledge_academia_art", "Knowledge / academia / art"),
        ("magic_mystery_belief", "Magic / mystery / belief"),
        ("military_defense", "Military / defense"),
        ("daily_services", "Daily services"),
    ]


def test_taxonomy_is_large_and_has_no_duplicates() -> None:
    taxonomy = load_taxonomy()
    subjects = [t for c in taxonomy.subject_categories for t in c.items]
    professions = [p for c in taxonomy.profession_categories for p in c.items]
    assert len(subjects) >= 150
    assert len(professions) >= 100
    assert not [t for t, n in Counter(subjects).items() if n > 1]
    assert not [p for p, n in Counter(professions).items() if n > 1]
    for category in (*taxonomy.subject_categories, *taxonomy.profession_categories):
        assert category.label and category.items


def test_category_lookup() -> None:
    taxonomy = load_taxonomy()
    assert taxonomy.subject_category_of("red fox").id == "mammal"
    assert taxonomy.profession_category_of("wizard").id == "magic_mystery_belief"
    with pytest.raises(LookupError):
        taxonomy.subject_category_of("not a creature")


def test_sampling_is_deterministic_balanced_and_covers_every_category() -> None:
    taxonomy = load_taxonomy()

    def draw(seed: int) -> list[tuple[str, str, str, str]]:
        rng = random.Random(seed)
        out = []
        for _ in range(800):
            subject_category, subject = taxonomy.sample_subject(rng)
            profession_category, profession = taxonomy.sample_profession(rng)
            assert subject in subject_category.items
            assert profession in profession_category.items
            out.append((subject_category.id, subject, profession_category.id, profession))
        return out

    first = draw(7)
    assert first == draw(7)
    assert first != draw(8)
    subject_counts = Counter(row[0] for row in first)
    profession_counts = Counter(row[2] for row in first)
    assert set(subject_counts) == {c.id for c in taxonomy.subject_categories}
    assert set(profession_counts) == {c.id for c in taxonomy.profession_categories}
    # Categories first, then items: the smallest category is drawn as often as the largest.
    assert min(subject_counts.values()) > 800 / 8 * 0.6
    assert min(profession_counts.values()) > 800 / 4 * 0.75


def _copy_vocabulary(tmp_path: Path) -> Path:
    directory = tmp_path / "vocabulary"
    shutil.copytree(VOCABULARY_DIR, directory)
    return directory


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_copied_directory_loads_like_the_default(tmp_path: Path) -> None:
    loaded = load_vocabulary(_copy_vocabulary(tmp_path))
    assert loaded == load_vocabulary()
    assert loaded is not load_vocabulary()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop(), r"exactly 28 entries, found 27"),
        (lambda d: d[1].update(id=d[0]["id"]), r"duplicate id 'pose\."),
        (lambda d: d[0].update(id="pose.Arms-Crossed"), r"does not match"),
        (lambda d: d[0].update(id="expr.arms_crossed"), r"does not match 'pose\."),
        (lambda d: d[0].update(id="pose.a.b"), r"does not match"),
        (lambda d: d[0].update(description=""), r"non-empty"),
        (lambda d: d[0].update(description="two\nlines"), r"single line"),
        (lambda d: d[0].pop("description"), r"exactly 'id' and 'description'"),
    ],
)
def test_a_broken_vocabulary_file_is_named_in_the_error(tmp_path: Path, change, message) -> None:
    directory = _copy_vocabulary(tmp_path)
    _edit(directory / "poses.json", change)
    with pytest.raises(VocabularyFileError, match=message) as caught:
        load_vocabulary(directory)
    assert caught.value.path == directory / "poses.json"
    assert "poses.json" in str(caught.value)


def test_invalid_json_and_missing_files_are_named(tmp_path: Path) -> None:
    directory = _copy_vocabulary(tmp_path)
    (directory / "expressions.json").write_text("[{not json")
    with pytest.raises(VocabularyFileError, match=r"expressions\.json: invalid JSON"):
        load_vocabulary(directory)
    (directory / "expressions.json").unlink()
    with pytest.raises(VocabularyFileError, match=r"expressions\.json: cannot read"):
        load_vocabulary(directory)


def test_broken_taxonomy_files_are_named(tmp_path: Path) -> None:
    directory = tmp_path / "taxonomy"
    shutil.copytree(TAXONOMY_DIR, directory)
    subjects = directory / "subject_types.json"
    professions = directory / "professions.json"
    original_subjects = subjects.read_text()
    original_professions = professions.read_text()
    assert load_taxonomy(directory) == load_taxonomy()

    def duplicate(data):
        data["categories"][1]["types"].append(data["categories"][0]["types"][0])

    _edit(subjects, duplicate)
    with pytest.raises(VocabularyFileError, match=r"subject_types\.json: duplicate entry"):
        load_taxonomy(directory)

    subjects.write_text(original_subjects)
    _edit(subjects, lambda d: d["categories"].pop())
    with pytest.raises(VocabularyFileError, match=r"subject_types\.json: expected exactly 8"):
        load_taxonomy(directory)

    subjects.write_text(original_subjects)
    _edit(professions, lambda d: d["categories"][0].update(id="academia"))
    with pytest.raises(VocabularyFileError, match=r"professions\.json: expected the categories"):
        load_taxonomy(directory)

    professions.write_text(original_professions)
    _edit(professions, lambda d: d["categories"][0].update(types=[]))
    with pytest.raises(VocabularyFileError, match=r"professions\.json: .*non-empty list"):
        load_taxonomy(directory)
