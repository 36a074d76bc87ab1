"""Text on the picture: boxed figure labels, fitting them, and wrapping the caption."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import ImageDraw

from hilapp.imaging import font

from .pen import INK, Pt


def draw_label(
    draw: ImageDraw.ImageDraw, center: Pt, lines: Sequence[str], size: int, bounds: tuple[int, int]
) -> None:
    """Centred multi-line label on a white box, kept inside the picture (bounds = width, bottom)."""
    f = font(size)
    widths = [draw.textlength(t, font=f) for t in lines]
    w, h = max(widths) + size, len(lines) * size * 1.2 + size * 0.4
    x = min(max(center[0] - w / 2, 2), bounds[0] - w - 2)
    y = min(max(center[1], 2), bounds[1] - h - 2)
    draw.rounded_rectangle(
        (x, y, x + w, y + h), radius=size // 3, fill=(255, 255, 255), outline=(120, 120, 120)
    )
    for i, t in enumerate(lines):
        draw.text(
            (x + w / 2, y + size * 0.2 + size * 1.2 * (i + 0.5)), t, fill=INK, font=f, anchor="mm"
        )


def fit_label(draw: ImageDraw.ImageDraw, lines: Sequence[str], size: int, room: float) -> int:
    """The largest font size up to ``size`` (at least 10) at which the label fits ``room``."""
    longest = max(lines, key=len)
    while size > 10 and draw.textlength(longest, font=font(size)) + size * 1.3 > room:
        size -= 1
    return size


def wrap_text(
    draw: ImageDraw.ImageDraw, text: str, size: int, width: float, max_lines: int
) -> list[str]:
    f = font(size)
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if draw.textlength(candidate, font=f) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1].rstrip(".,;") + " …"
    return lines
