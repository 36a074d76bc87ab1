"""What an export is asked to do, checked before anything is written."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

FORMATS = ("webdataset", "parquet", "omnigen2")
DEFAULT_SHARD_MAX_BYTES = 1 << 30  # 1 GiB, the usual WebDataset shard size
MIN_SHARD_MAX_BYTES = 2 * 10240  # two tar records
MANIFEST_NAME = "manifest.json"


class ExportError(ValueError):
    """A bad request or a state that makes the export impossible; the message is for the user."""


@dataclass(frozen=True)
class ExportOptions:
    formats: tuple[str, ...] = FORMATS
    holdout_characters: int = 0
    holdout_stories: int = 0
    shard_max_bytes: int = DEFAULT_SHARD_MAX_BYTES
    include_partial_stories: bool = False
    seed: int = 0

    def as_params(self) -> dict[str, Any]:
        return asdict(self) | {"formats": list(self.formats)}


def parse_formats(value: str | Iterable[str]) -> tuple[str, ...]:
    parts = value.split(",") if isinstance(value, str) else list(value)
    names = [p.strip().lower() for p in parts if p and p.strip()]
    known = ", ".join(FORMATS)
    if not names:
        raise ExportError(f"Give at least one format of: {known}.")
    unknown = sorted(set(names) - set(FORMATS))
    if unknown:
        raise ExportError(f"Unknown format {', '.join(map(repr, unknown))}; known: {known}.")
    return tuple(f for f in FORMATS if f in names)  # canonical order, no duplicates


def _int(params: Mapping[str, Any], name: str, minimum: int = 0) -> int:
    raw = params.get(name, getattr(ExportOptions, name))  # the field's default
    if isinstance(raw, bool) or raw is None:
        raise ExportError(f"{name} must be an integer.")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ExportError(f"{name} must be an integer, not {raw!r}.") from None
    if value < minimum:
        raise ExportError(f"{name} must be at least {minimum}, not {value}.")
    return value


def options_from_params(params: Mapping[str, Any]) -> ExportOptions:
    """Options from a dict (API body, job params, command arguments); raises ExportError."""
    unknown = sorted(set(params) - {f.name for f in fields(ExportOptions)})
    if unknown:
        raise ExportError(f"Unknown parameter(s): {', '.join(unknown)}.")
    partial = params.get("include_partial_stories", False)
    if not isinstance(partial, bool):
        raise ExportError("include_partial_stories must be true or false.")
    options = ExportOptions(
        formats=parse_formats(params.get("formats", FORMATS)),
        holdout_characters=_int(params, "holdout_characters"),
        holdout_stories=_int(params, "holdout_stories"),
        shard_max_bytes=_int(params, "shard_max_bytes", MIN_SHARD_MAX_BYTES),
        include_partial_stories=partial,
        seed=_int(params, "seed"),
    )
    if options.holdout_stories and not options.holdout_characters:
        raise ExportError("Held-out stories need held-out characters (--holdout-characters).")
    return options
