"""Body and head outlines, and the per-category features drawn behind and in front of them."""

from __future__ import annotations

import math

from .figures import Look, shade
from .pen import HEAD_Y, Pen, Pt, ellipse


def body_outline(shape: int) -> list[Pt]:
    if shape == 0:
        return ellipse((0, 1.45), 1.55, 1.95)
    if shape == 1:
        return [
            (-1.5, -0.3),
            (1.5, -0.3),
            (1.6, 0.3),
            (1.6, 2.7),
            (1.1, 3.2),
            (-1.1, 3.2),
            (-1.6, 2.7),
            (-1.6, 0.3),
        ]
    return [(-1.9, -0.3), (1.9, -0.3), (1.7, 0.6), (1.15, 3.2), (-1.15, 3.2), (-1.7, 0.6)]


def head_outline(shape: int, r: float) -> list[Pt]:
    c = (0.0, HEAD_Y)
    if shape == 0:
        return ellipse(c, r, r)
    if shape == 1:
        a, b = r * 1.05, r * 0.6
        return [
            (c[0] + x, c[1] + y)
            for x, y in ((-a, -b), (-b, -a), (b, -a), (a, -b), (a, b), (b, a), (-b, a), (-a, b))
        ]
    return ellipse(c, r * 1.25, r * 0.9)


def draw_features_back(pen: Pen, look: Look, r: float) -> None:
    """Category features behind the body and head: tails, wings, fins, petals, hair."""
    cat, v, ol = look.category, look.variant, look.outline
    top = HEAD_Y + r
    if cat == "mammal":
        pen.line([(1.2, 0.2), (2.4, 0.0), (2.9, 1.0), (2.6, 1.8)], 0.45, shade(look.body, 0.8), ol)
        if v % 2:
            for s in (-1, 1):
                pen.poly(
                    [(s * 0.5 * r, top - 0.4), (s * 1.15 * r, top + 1.1), (s * 1.1 * r, top - 0.9)],
                    look.body,
                    ol,
                )
        else:
            for s in (-1, 1):
                pen.circle((s * 0.85 * r, top - 0.25), 0.6, look.body, ol)
    elif cat == "bird":
        for s in (-1, 1):
            pen.poly(
                [(s * 1.2, 2.8), (s * 3.1, 2.2), (s * 3.0, 0.6), (s * 2.2, 1.0), (s * 1.3, 0.4)],
                look.accent,
                ol,
            )
        for i in (-1, 0, 1):
            pen.poly(
                [(i * 0.3 - 0.12, top - 0.2), (i * 0.6, top + 1.0), (i * 0.3 + 0.12, top - 0.2)],
                look.detail,
                ol,
            )
    elif cat == "reptile_amphibian":
        pen.poly([(0.9, 0.0), (3.6, -0.4), (1.2, 0.9)], look.body, ol)
        if v % 2:
            for s in (-1, 1):
                pen.circle((s * 0.6 * r, top - 0.2), 0.55, look.body, ol)
        else:
            for i in range(-2, 3):
                pen.poly(
                    [
                        (i * 0.42 - 0.22, top - 0.3),
                        (i * 0.42, top + 0.45),
                        (i * 0.42 + 0.22, top - 0.3),
                    ],
                    look.accent,
                    ol,
                )
    elif cat == "marine_life":
        pen.poly([(-0.5, top - 0.3), (0.2, top + 1.4), (0.7, top - 0.3)], look.accent, ol)
        for s in (-1, 1):
            pen.poly([(s * 1.3, 2.2), (s * 2.8, 1.2), (s * 1.4, 0.8)], look.accent, ol)
        for i, (bx, by) in enumerate(((2.3, 6.2), (2.7, 7.0), (2.2, 7.7))):
            pen.circle((bx, by), 0.15 + 0.07 * i, None, (120, 170, 230))
    elif cat == "plant":
        if v % 2:
            for a in range(0, 360, 40):
                x, y = math.cos(math.radians(a)) * r * 1.15, math.sin(math.radians(a)) * r * 1.15
                pen.circle((x, HEAD_Y + y), 0.55 * r, look.accent, ol)
        for s in (-1, 1):
            pen.poly(ellipse((s * 0.55, top + 0.55), 0.65, 0.28, 12), (70, 160, 70), ol)
        pen.line([(0, top - 0.2), (0, top + 0.7)], 0.15, (60, 120, 50))
    elif cat == "mythology":
        if v % 2:
            for s in (-1, 1):
                pen.poly(
                    [
                        (s * 1.2, 2.9),
                        (s * 3.4, 3.9),
                        (s * 3.0, 2.3),
                        (s * 3.3, 1.2),
                        (s * 2.3, 1.5),
                        (s * 1.3, 0.8),
                    ],
                    look.detail,
                    ol,
                )
        else:
            pen.line(ellipse((0, top + 0.45), r * 0.9, 0.3, 24), 0.12, (230, 190, 40))
    elif cat == "object_robot":
        pen.line([(0, top), (0, top + 1.0)], 0.12, (90, 90, 100))
        pen.circle((0, top + 1.1), 0.28, (230, 60, 60), ol)
    elif cat == "default":
        for s in (-1, 1):
            pen.line([(s * 0.4, top - 0.2), (s * 0.9, top + 0.8)], 0.12, look.outline)
            pen.circle((s * 0.9, top + 0.85), 0.2, look.accent, ol)


def draw_features_front(pen: Pen, look: Look, r: float) -> None:
    cat, v, ol = look.category, look.variant, look.outline
    top = HEAD_Y + r
    if cat == "mythology":
        for s in (-1, 1):
            pen.poly(
                [(s * 0.35 * r, top - 0.35), (s * 0.95 * r, top + 1.0), (s * 0.75 * r, top - 0.5)],
                look.accent,
                ol,
            )
    elif cat == "human":
        style = v % 3
        if style == 0:
            pen.poly(
                ellipse((0, HEAD_Y + 0.35 * r), r * 1.05, r * 0.75, 20, 0, 180), look.detail, ol
            )
        elif style == 1:
            pen.poly(
                [
                    (-r, HEAD_Y + 0.3 * r),
                    (-0.6 * r, top + 0.5),
                    (-0.2 * r, top - 0.1),
                    (0.2 * r, top + 0.6),
                    (0.5 * r, top),
                    (r, HEAD_Y + 0.5 * r),
                ],
                look.detail,
                ol,
            )
        else:
            pen.poly(
                ellipse((0, HEAD_Y + 0.35 * r), r * 1.05, r * 0.7, 20, 0, 180), look.detail, ol
            )
            pen.circle((0, top + 0.3), 0.5, look.detail, ol)
    elif cat == "object_robot":
        for s in (-1, 1):
            pen.circle((s * 1.05 * r, HEAD_Y), 0.18, (170, 170, 180), ol)
    elif cat == "bird":
        pen.poly(
            [(-0.3, HEAD_Y - 0.15 * r), (0.3, HEAD_Y - 0.15 * r), (0, HEAD_Y - 0.5 * r)],
            (240, 160, 40),
            ol,
        )
