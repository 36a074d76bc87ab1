"""Drawing in figure units: the pen (y up, origin at the hips, tilted by the pose), ellipses."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import ImageDraw

from hilapp.imaging import font

RGB = tuple[int, int, int]
Pt = tuple[float, float]
WHITE: RGB = (255, 255, 255)
INK: RGB = (25, 25, 35)
# The head's centre, in figure units above the hips.
HEAD_Y = 4.6


class Pen:
    """Draws in figure units (y up, origin at the hips), rotated by the pose's tilt."""

    def __init__(self, draw: ImageDraw.ImageDraw, hip: Pt, unit: float, tilt: float) -> None:
        self.draw, self.hx, self.hy, self.u = draw, hip[0], hip[1], unit
        self.cos, self.sin = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))
        self.ow = max(2, round(unit * 0.12))

    def pt(self, p: Pt) -> Pt:
        x, y = p
        return (
            self.hx + (x * self.cos - y * self.sin) * self.u,
            self.hy - (x * self.sin + y * self.cos) * self.u,
        )

    def poly(self, pts: Sequence[Pt], fill: RGB, outline: RGB | None = None) -> None:
        self.draw.polygon(
            [self.pt(p) for p in pts], fill=fill, outline=outline, width=self.ow if outline else 0
        )

    def circle(self, c: Pt, r: float, fill: RGB | None, outline: RGB | None = None) -> None:
        x, y = self.pt(c)
        rr = r * self.u
        width = self.ow if outline else 0
        self.draw.ellipse((x - rr, y - rr, x + rr, y + rr), fill=fill, outline=outline, width=width)

    def line(self, pts: Sequence[Pt], width: float, fill: RGB, outline: RGB | None = None) -> None:
        xy = [self.pt(p) for p in pts]
        w = max(2, round(width * self.u))
        if outline is not None:
            self.draw.line(xy, fill=outline, width=w + 2 * self.ow, joint="curve")
        self.draw.line(xy, fill=fill, width=w, joint="curve")

    def text(self, c: Pt, label: str, size: float, fill: RGB = INK) -> None:
        self.draw.text(self.pt(c), label, fill=fill, font=font(round(size * self.u)), anchor="mm")


def ellipse(
    c: Pt, rx: float, ry: float, n: int = 28, start: float = 0, end: float = 360
) -> list[Pt]:
    steps = [start + (end - start) * i / (n - 1 if end - start < 360 else n) for i in range(n)]
    return [
        (c[0] + rx * math.cos(math.radians(a)), c[1] + ry * math.sin(math.radians(a)))
        for a in steps
    ]
