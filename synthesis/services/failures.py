"""Failures as an admin reads them: a kind, one line, and the full text on demand.

Provider errors are stored verbatim (a pydantic ``ValidationError`` runs to dozens of lines
with the model's whole answer in it); the batch page shows a kind and a one-line summary,
with the stored text behind a "details" toggle.
"""

from __future__ import annotations

import re
from typing import TypedDict

LINE_MAX = 160
# "3 validation errors for IQCCVerdict" followed by "field\n  Field required [type=missing, …"
_PYDANTIC = re.compile(r"(\d+) validation errors? for (\w+)")
_PYDANTIC_FIELD = re.compile(r"^(\S[^\n]*)\n\s+([^\[\n]+?)\s*\[type=", re.MULTILINE)


class Failure(TypedDict):
    kind: str
    line: str
    details: str


def _shorten(text: str) -> str:
    return text if len(text) <= LINE_MAX else text[: LINE_MAX - 1].rstrip() + "…"


def failure_line(text: str) -> str:
    """One readable line for a stored error text."""
    text = text.strip()
    match = _PYDANTIC.search(text)
    if match:
        count, model = match.groups()
        fields = [f"{f.strip()}: {why.strip().lower()}" for f, why in _PYDANTIC_FIELD.findall(text)]
        head = f"the answer did not fit {model} ({count} problem{'s' if count != '1' else ''})"
        return _shorten(f"{head}: {'; '.join(fields[:3])}" if fields else head)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return _shorten(first or "(no reason recorded)")


def failure_readable(*, kind: str, text: str) -> Failure:
    """``kind`` (a unit state or a provider error kind) and the stored text, made readable."""
    text = text.strip()
    line = failure_line(text)
    return {"kind": kind or "error", "line": line, "details": text if text != line else ""}
