"""The review app stays independent of the apps whose subjects it reviews."""

from __future__ import annotations

import re
from pathlib import Path

import review

REVIEW_DIR = Path(review.__file__).parent


def test_review_does_not_import_synthesis() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+synthesis\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(REVIEW_DIR))
        for path in REVIEW_DIR.rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []
