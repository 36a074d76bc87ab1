"""The props a pose brings: chair, wall, speed lines, book, box, spell sparks, impact star."""

from __future__ import annotations

import math

from .pen import INK, Pen, Pt, ellipse
from .poses import Pose


def draw_props(pen: Pen, pose: Pose, hands: tuple[Pt, Pt], front: bool) -> None:
    hl, hr = hands
    p = pose.prop
    grey = (150, 150, 160)
    if not front:
        if p == "chair":
            pen.poly([(-1.9, -0.4), (1.9, -0.4), (1.9, -0.9), (-1.9, -0.9)], (160, 110, 70), INK)
            for x in (-1.7, 1.5):
                pen.poly(
                    [(x, -0.9), (x + 0.25, -0.9), (x + 0.25, -3.3), (x, -3.3)], (140, 95, 60), INK
                )
        elif p == "speed":
            for i, y in enumerate((1.0, 2.2, 3.4)):
                pen.line([(-2.6 - 0.3 * i, y), (-4.2 - 0.3 * i, y)], 0.1, grey)
        elif p == "wall":
            pen.poly([(-2.6, -3.3), (-2.0, -3.3), (-2.0, 7.0), (-2.6, 7.0)], (185, 175, 165), INK)
        return
    if p == "wave":
        for i in (1, 2):
            pen.line(ellipse(hr, 0.5 + 0.35 * i, 0.5 + 0.35 * i, 6, -30, 40), 0.1, INK)
    elif p == "point":
        x, y = hr
        pen.line([(x + 0.4, y), (x + 1.6, y)], 0.12, INK)
        pen.poly([(x + 1.6, y + 0.3), (x + 2.1, y), (x + 1.6, y - 0.3)], INK)
    elif p == "jump":
        for s in (-1, 1):
            pen.line([(s * 1.0, -3.6), (s * 1.6, -4.4)], 0.1, grey)
    elif p in ("book", "paper"):
        c = ((hl[0] + hr[0]) / 2, (hl[1] + hr[1]) / 2 + 0.3)
        pen.poly(
            [
                (c[0] - 1.0, c[1] - 0.6),
                (c[0] + 1.0, c[1] - 0.6),
                (c[0] + 1.0, c[1] + 0.7),
                (c[0] - 1.0, c[1] + 0.7),
            ],
            (250, 250, 240) if p == "paper" else (170, 60, 60),
            INK,
        )
        if p == "book":
            pen.line([(c[0], c[1] - 0.6), (c[0], c[1] + 0.7)], 0.08, INK)
        else:
            pen.line([(hr[0], hr[1]), (hr[0] + 0.6, hr[1] + 0.9)], 0.1, (40, 40, 160))
    elif p == "box":
        pen.poly([(-1.2, 0.4), (1.2, 0.4), (1.2, 2.0), (-1.2, 2.0)], (200, 150, 90), INK)
        pen.line([(-1.2, 1.2), (1.2, 1.2)], 0.08, INK)
    elif p == "spell":
        for h in hands:
            for a in range(0, 360, 60):
                d = (math.cos(math.radians(a)) * 0.7, math.sin(math.radians(a)) * 0.7)
                pen.line(
                    [(h[0] + d[0] * 0.5, h[1] + d[1] * 0.5), (h[0] + d[0], h[1] + d[1])],
                    0.08,
                    (150, 80, 230),
                )
    elif p == "impact":
        x, y = hr
        star = [
            (
                x + 0.9 + (0.8 if i % 2 == 0 else 0.35) * math.cos(math.radians(i * 36)),
                y + (0.8 if i % 2 == 0 else 0.35) * math.sin(math.radians(i * 36)),
            )
            for i in range(10)
        ]
        pen.poly(star, (250, 210, 40), INK)
    elif p == "heart":
        c = (0, 2.1)
        pen.poly(
            [
                (c[0], c[1] - 0.45),
                (c[0] - 0.5, c[1] + 0.05),
                (c[0] - 0.25, c[1] + 0.35),
                (c[0], c[1] + 0.15),
                (c[0] + 0.25, c[1] + 0.35),
                (c[0] + 0.5, c[1] + 0.05),
            ],
            (230, 60, 90),
            INK,
        )
    elif p == "fall":
        for x in (-1.5, 0, 1.5):
            pen.line([(x, 8.0), (x, 9.0)], 0.1, grey)
