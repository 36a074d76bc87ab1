"""Per-stage reviewing guidelines: Markdown files under ``prompts/guidelines/``, versioned by
content hash (like the prompts), rendered to HTML with a small, safe subset of Markdown.

Safety by construction: the text is HTML-escaped first, and the renderer only adds tags it
writes itself (no links, no attributes, no raw HTML), so a guideline cannot inject markup.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.utils.safestring import SafeString, mark_safe

from review.stages import Stage


@dataclass(frozen=True)
class Guideline:
    stage: str
    version: str  # 12 hex digits of the file's SHA-256; "" when the file is missing
    html: SafeString


def guidelines_dir() -> Path:
    return Path(settings.BASE_DIR) / "prompts" / "guidelines"


def guideline_for(stage: str) -> Guideline:
    """The current guideline of ``stage`` (re-read when the file changes)."""
    if stage not in Stage.values:
        raise ValueError(f"Unknown review stage {stage!r}")
    path = guidelines_dir() / f"{stage}.md"
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return Guideline(stage, "", mark_safe(""))
    return _load(str(path), stamp, stage)


@lru_cache(maxsize=16)
def _load(path: str, stamp: int, stage: str) -> Guideline:
    raw = Path(path).read_bytes()
    version = hashlib.sha256(raw).hexdigest()[:12]
    return Guideline(stage, version, render_markdown(raw.decode("utf-8")))


_INLINE = [
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"<em>\1</em>"),
]
_HEADING = re.compile(r"(#{1,3})\s+(.*)")
_BULLET = re.compile(r"[-*]\s+(.*)")
_NUMBERED = re.compile(r"\d+\.\s+(.*)")


def _inline(text: str) -> str:
    out = html.escape(text, quote=True)
    # Code spans first, kept apart so that ** or * inside them stay literal.
    parts = re.split(r"(`[^`]+`)", out)
    rendered = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            rendered.append(f"<code>{part[1:-1]}</code>")
            continue
        for pattern, repl in _INLINE:
            part = pattern.sub(repl, part)
        rendered.append(part)
    return "".join(rendered)


def render_markdown(text: str) -> SafeString:
    """Headings (``#``–``###``, shown one level down), paragraphs, ``-`` and ``1.`` lists with
    continuation lines, ``**bold**``, ``*italic*``, `` `code` ``; everything else is text."""
    blocks: list[str] = []
    para: list[str] = []
    items: list[str] = []
    list_tag = ""

    def flush() -> None:
        nonlocal list_tag
        if para:
            blocks.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if items:
            body = "".join(f"<li>{_inline(i)}</li>" for i in items)
            blocks.append(f"<{list_tag}>{body}</{list_tag}>")
            items.clear()
            list_tag = ""

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            flush()
            continue
        heading = _HEADING.fullmatch(stripped)
        bullet = _BULLET.fullmatch(stripped)
        numbered = _NUMBERED.fullmatch(stripped)
        if heading:
            flush()
            level = len(heading.group(1)) + 1  # the page has its own h1
            blocks.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif bullet or numbered:
            tag = "ul" if bullet else "ol"
            if para or (items and tag != list_tag):
                flush()
            list_tag = tag
            items.append((bullet or numbered).group(1))  # type: ignore[union-attr]
        elif items and line[:1].isspace():
            items[-1] += " " + stripped  # a continuation line of the last item
        else:
            if items:
                flush()
            para.append(stripped)
    flush()
    return mark_safe("\n".join(blocks))  # every piece was escaped by _inline
