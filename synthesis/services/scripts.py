"""Validation of a story script (Phase II): the rules a planner answer must satisfy.

``script_validate`` never raises on a bad script: it returns readable error strings, which go
back to the planner verbatim in the repair prompt and are kept on the story when it is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from synthesis.schemas import StoryScript
from synthesis.vocabulary import Vocabulary, load_vocabulary


@dataclass(frozen=True)
class ScriptCheck:
    script: StoryScript | None
    errors: list[str]

    @property
    def valid(self) -> bool:
        return self.script is not None and not self.errors


def script_validate(
    data: Any,
    *,
    cids: Sequence[str],
    min_frames: int,
    max_frames: int,
    vocabulary: Vocabulary | None = None,
) -> ScriptCheck:
    """Check ``data`` (a dict, a JSON string or a ``StoryScript``) against every rule.

    Rules: the schema; ``min_frames <= frames <= max_frames``; only this story's CIDs; every CID
    at least once; no character twice in one frame; only vocabulary IDs (pose, expression,
    composition, each from its own list).
    """
    vocab = vocabulary or load_vocabulary()
    try:
        script = _parse(data)
    except ValidationError as exc:
        return ScriptCheck(None, [_schema_error(err) for err in exc.errors()])
    errors: list[str] = []
    count = len(script.frames)
    if not min_frames <= count <= max_frames:
        errors.append(
            f"the script has {count} frames; it must have between {min_frames} and "
            f"{max_frames} frames"
        )
    allowed = list(cids)
    seen: set[str] = set()
    for number, frame in enumerate(script.frames, start=1):
        in_frame: set[str] = set()
        for ch in frame.characters:
            where = f"frame {number}, character {ch.cid!r}"
            if ch.cid not in allowed:
                errors.append(
                    f"frame {number}: CID {ch.cid!r} is not a character of this story "
                    f"(use only {', '.join(allowed)})"
                )
            elif ch.cid in in_frame:
                errors.append(f"frame {number}: character {ch.cid!r} appears more than once")
            in_frame.add(ch.cid)
            seen.add(ch.cid)
            errors.extend(_unknown_ids(where, ch.pid, ch.eid, ch.ctag, vocab))
    missing = [cid for cid in allowed if cid not in seen]
    if missing:
        errors.append(
            f"character{'s' if len(missing) > 1 else ''} {', '.join(missing)} never "
            "appear(s) in any frame; every character must appear at least once"
        )
    return ScriptCheck(script, errors)


def _parse(data: Any) -> StoryScript:
    if isinstance(data, StoryScript):
        return StoryScript.model_validate(data.model_dump())
    if isinstance(data, str | bytes):
        return StoryScript.model_validate_json(data)
    return StoryScript.model_validate(data)


def _schema_error(err: Any) -> str:
    location = ".".join(str(part) for part in err.get("loc", ())) or "script"
    return f"schema: {location}: {err.get('msg', 'invalid')}"


def _unknown_ids(where: str, pid: str, eid: str, ctag: str, vocab: Vocabulary) -> list[str]:
    errors = []
    if pid not in vocab.poses:
        errors.append(f"{where}: pid {pid!r} is not a pose ID of the control vocabulary")
    if eid not in vocab.expressions:
        errors.append(f"{where}: eid {eid!r} is not an expression ID of the control vocabulary")
    if ctag not in vocab.compositions:
        errors.append(f"{where}: ctag {ctag!r} is not a composition tag of the control vocabulary")
    return errors
