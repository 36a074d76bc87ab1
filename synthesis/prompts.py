"""Every prompt is a file under ``prompts/templates/``; this module renders them.

Templates use Django's template language with autoescaping off (prompts are not HTML). Each
rendering carries the template's name and a hash of its content, which the ledger records, so a
changed prompt is a new version without anyone bumping a number.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.template import Context, Engine

PROMPTS_DIR = Path(settings.BASE_DIR) / "prompts"
TEMPLATES_DIR = PROMPTS_DIR / "templates"


@dataclass(frozen=True)
class RenderedPrompt:
    name: str
    version: str
    text: str


class PromptNotFound(LookupError):
    pass


@cache
def _engine() -> Engine:
    return Engine(dirs=[str(TEMPLATES_DIR)], autoescape=False, string_if_invalid="")


@cache
def prompt_version(name: str) -> str:
    path = TEMPLATES_DIR / f"{name}.txt"
    if not path.exists():
        raise PromptNotFound(f"no prompt template {name!r} under {TEMPLATES_DIR}")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def prompt_names() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.txt"))


def render_prompt(name: str, /, **context: Any) -> RenderedPrompt:
    version = prompt_version(name)
    template = _engine().get_template(f"{name}.txt")
    text = template.render(Context(context, autoescape=False)).strip() + "\n"
    return RenderedPrompt(name=name, version=version, text=text)
