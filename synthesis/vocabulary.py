"""The decoupled control vocabulary and the character taxonomy, loaded from ``prompts/``.

The paper fixes the control space at 28 pose IDs, 12 expression IDs and 21 composition tags, each
a unique, semantically meaningful text identifier (``pose.arms_crossed``, ``expr.surprised``,
``comp.close_up``). Its appendix with the exact lists is not available, so the project defines
them once, as data, in ``prompts/vocabulary/*.json``, with a one-line visual description per ID
that prompts use. The taxonomy (8 subject-type categories, 4 profession categories) lives in
``prompts/taxonomy/*.json``.

This module is the only reader of those files. Everything is validated at load time (counts,
unique IDs, ID format, non-empty single-line descriptions, no duplicate taxonomy entries); a
broken file raises :class:`VocabularyFileError` naming the file.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from synthesis.prompts import PROMPTS_DIR

VOCABULARY_DIR = PROMPTS_DIR / "vocabulary"
TAXONOMY_DIR = PROMPTS_DIR / "taxonomy"

POSE_COUNT = 28
EXPRESSION_COUNT = 12
COMPOSITION_COUNT = 21

SUBJECT_CATEGORY_COUNT = 8
PROFESSION_CATEGORY_IDS = (
    "knowledge_academia_art",
    "magic_mystery_belief",
    "military_defense",
    "daily_services",
)

# (file stem, id prefix, exact count) for each kind of control signal.
_CONTROL_FILES: tuple[tuple[str, str, int], ...] = (
    ("poses", "pose", POSE_COUNT),
    ("expressions", "expr", EXPRESSION_COUNT),
    ("compositions", "comp", COMPOSITION_COUNT),
)
_CATEGORY_ID_RE = re.compile(r"^[a-z0-9_]+$")


class VocabularyFileError(ValueError):
    """A vocabulary or taxonomy file is missing, not valid JSON, or breaks an invariant."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class UnknownControlId(ValueError):
    """A pose/expression/composition ID that is not in the control vocabulary."""


@dataclass(frozen=True)
class ControlId:
    id: str
    description: str


@dataclass(frozen=True)
class Vocabulary:
    poses: dict[str, ControlId]
    expressions: dict[str, ControlId]
    compositions: dict[str, ControlId]

    def get(self, control_id: str) -> ControlId:
        """The entry for any control ID (pose, expression or composition)."""
        for table in (self.poses, self.expressions, self.compositions):
            if control_id in table:
                return table[control_id]
        raise UnknownControlId(
            f"unknown control id {control_id!r}: not a pose, expression or composition "
            f"of the control vocabulary"
        )

    def describe(self, control_id: str) -> str:
        return self.get(control_id).description

    def as_prompt_lists(self) -> dict[str, list[dict[str, str]]]:
        """The whole vocabulary as plain lists of ``{"id", "description"}``, in file order."""
        return {
            "poses": [_as_dict(c) for c in self.poses.values()],
            "expressions": [_as_dict(c) for c in self.expressions.values()],
            "compositions": [_as_dict(c) for c in self.compositions.values()],
        }


@dataclass(frozen=True)
class Category:
    id: str
    label: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Taxonomy:
    subject_categories: tuple[Category, ...]
    profession_categories: tuple[Category, ...]
    _subject_index: dict[str, Category] = field(init=False, repr=False, compare=False)
    _profession_index: dict[str, Category] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_subject_index", _index(self.subject_categories))
        object.__setattr__(self, "_profession_index", _index(self.profession_categories))

    def sample_subject(self, rng: random.Random) -> tuple[Category, str]:
        """A category uniformly, then a subject type uniformly within it.

        Sampling categories first keeps the eight subject categories balanced whatever their
        sizes, as in the paper's Fig. 4 joint distribution.
        """
        return _sample(self.subject_categories, rng)

    def sample_profession(self, rng: random.Random) -> tuple[Category, str]:
        """A profession category uniformly, then a profession uniformly within it."""
        return _sample(self.profession_categories, rng)

    def subject_category_of(self, subject_type: str) -> Category:
        try:
            return self._subject_index[subject_type]
        except KeyError:
            raise LookupError(f"unknown subject type {subject_type!r}") from None

    def profession_category_of(self, profession: str) -> Category:
        try:
            return self._profession_index[profession]
        except KeyError:
            raise LookupError(f"unknown profession {profession!r}") from None


def load_vocabulary(directory: Path | None = None) -> Vocabulary:
    """The control vocabulary from ``directory`` (default ``prompts/vocabulary``, cached)."""
    if directory is None:
        return _default_vocabulary()
    return _read_vocabulary(Path(directory))


def load_taxonomy(directory: Path | None = None) -> Taxonomy:
    """The taxonomy from ``directory`` (default ``prompts/taxonomy``, cached)."""
    if directory is None:
        return _default_taxonomy()
    return _read_taxonomy(Path(directory))


@cache
def _default_vocabulary() -> Vocabulary:
    return _read_vocabulary(VOCABULARY_DIR)


@cache
def _default_taxonomy() -> Taxonomy:
    return _read_taxonomy(TAXONOMY_DIR)


def _read_vocabulary(directory: Path) -> Vocabulary:
    tables: dict[str, dict[str, ControlId]] = {}
    seen: set[str] = set()
    for stem, prefix, count in _CONTROL_FILES:
        path = directory / f"{stem}.json"
        table = _read_control_file(path, prefix, count)
        clash = seen & table.keys()
        if clash:
            raise VocabularyFileError(path, f"ids also defined in another file: {sorted(clash)}")
        seen |= table.keys()
        tables[stem] = table
    return Vocabulary(
        poses=tables["poses"],
        expressions=tables["expressions"],
        compositions=tables["compositions"],
    )


def _read_control_file(path: Path, prefix: str, count: int) -> dict[str, ControlId]:
    data = _read_json(path)
    if not isinstance(data, list):
        raise VocabularyFileError(path, "expected a JSON list of {id, description} objects")
    if len(data) != count:
        raise VocabularyFileError(path, f"expected exactly {count} entries, found {len(data)}")
    id_re = re.compile(rf"^{re.escape(prefix)}\.[a-z0-9_]+$")
    table: dict[str, ControlId] = {}
    for n, entry in enumerate(data):
        if not isinstance(entry, dict) or set(entry) != {"id", "description"}:
            raise VocabularyFileError(
                path, f"entry {n}: expected an object with exactly 'id' and 'description'"
            )
        cid, description = entry["id"], entry["description"]
        if not isinstance(cid, str) or not id_re.match(cid):
            raise VocabularyFileError(
                path, f"entry {n}: id {cid!r} does not match '{prefix}.<[a-z0-9_]+>'"
            )
        if cid in table:
            raise VocabularyFileError(path, f"entry {n}: duplicate id {cid!r}")
        _check_line(path, f"entry {n} ({cid}) description", description)
        table[cid] = ControlId(id=cid, description=description.strip())
    return table


def _read_taxonomy(directory: Path) -> Taxonomy:
    subjects_path = directory / "subject_types.json"
    professions_path = directory / "professions.json"
    subjects = _read_categories(subjects_path)
    if len(subjects) != SUBJECT_CATEGORY_COUNT:
        raise VocabularyFileError(
            subjects_path,
            f"expected exactly {SUBJECT_CATEGORY_COUNT} categories, found {len(subjects)}",
        )
    professions = _read_categories(professions_path)
    ids = tuple(c.id for c in professions)
    if sorted(ids) != sorted(PROFESSION_CATEGORY_IDS):
        raise VocabularyFileError(
            professions_path,
            f"expected the categories {list(PROFESSION_CATEGORY_IDS)}, found {list(ids)}",
        )
    return Taxonomy(subject_categories=subjects, profession_categories=professions)


def _read_categories(path: Path) -> tuple[Category, ...]:
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise VocabularyFileError(path, 'expected {"categories": [...]}')
    categories: list[Category] = []
    seen_ids: set[str] = set()
    seen_items: dict[str, str] = {}
    for n, entry in enumerate(data["categories"]):
        if not isinstance(entry, dict) or set(entry) != {"id", "label", "types"}:
            raise VocabularyFileError(
                path, f"category {n}: expected an object with exactly 'id', 'label' and 'types'"
            )
        cat_id, label, types = entry["id"], entry["label"], entry["types"]
        if not isinstance(cat_id, str) or not _CATEGORY_ID_RE.match(cat_id):
            raise VocabularyFileError(path, f"category {n}: bad id {cat_id!r}")
        if cat_id in seen_ids:
            raise VocabularyFileError(path, f"category {n}: duplicate id {cat_id!r}")
        seen_ids.add(cat_id)
        _check_line(path, f"category {cat_id} label", label)
        if not isinstance(types, list) or not types:
            raise VocabularyFileError(path, f"category {cat_id}: 'types' must be a non-empty list")
        for item in types:
            _check_line(path, f"category {cat_id} entry", item)
            key = item.strip()
            if key in seen_items:
                raise VocabularyFileError(
                    path,
                    f"duplicate entry {key!r} (in {seen_items[key]!r} and {cat_id!r})",
                )
            seen_items[key] = cat_id
        categories.append(
            Category(id=cat_id, label=label.strip(), items=tuple(t.strip() for t in types))
        )
    return tuple(categories)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VocabularyFileError(path, f"cannot read: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise VocabularyFileError(path, f"invalid JSON: {exc}") from exc


def _check_line(path: Path, what: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise VocabularyFileError(path, f"{what} must be a non-empty string")
    if "\n" in value or "\r" in value:
        raise VocabularyFileError(path, f"{what} must be a single line")


def _as_dict(control: ControlId) -> dict[str, str]:
    return {"id": control.id, "description": control.description}


def _index(categories: tuple[Category, ...]) -> dict[str, Category]:
    return {item: category for category in categories for item in category.items}


def _sample(categories: tuple[Category, ...], rng: random.Random) -> tuple[Category, str]:
    category = rng.choice(categories)
    return category, rng.choice(category.items)
