"""Expressions: eyes, brows, mouth and extras per expression ID, and drawing them on a head."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .figures import Look
from .hashing import digest, pick
from .pen import HEAD_Y, INK, WHITE, Pen, ellipse


@dataclass(frozen=True)
class Expr:
    eyes: str = "dot"  # dot, wide, closed_up, closed, half, look_up, look_down
    mouth: str = "line"  # line, smile, grin, frown, o, wavy, side, small
    brows: str = ""  # angry, sad, raised, one_raised, flat
    extras: tuple[str, ...] = ()  # blush, tears, sweat, zzz, think, anger, green


EXPRESSIONS: dict[str, Expr] = {
    "neutral": Expr(),
    "happy": Expr("dot", "smile", "", ("blush",)),
    "laughing": Expr("closed_up", "grin", "raised", ("blush",)),
    "sad": Expr("dot", "frown", "sad", ("tears",)),
    "angry": Expr("dot", "frown", "angry", ("anger",)),
    "surprised": Expr("wide", "o", "raised"),
    "fearful": Expr("wide", "wavy", "sad", ("sweat",)),
    "disgusted": Expr("half", "side", "one_raised", ("green",)),
    "determined": Expr("half", "line", "flat"),
    "thoughtful": Expr("look_up", "side", "one_raised", ("think",)),
    "embarrassed": Expr("look_down", "wavy", "", ("blush", "sweat")),
    "sleepy": Expr("closed", "small", "", ("zzz",)),
}
_EYES = ("dot", "wide", "closed_up", "closed", "half", "look_up", "look_down")
_MOUTHS = ("line", "smile", "grin", "frown", "o", "wavy", "side", "small")
_BROWS = ("", "angry", "sad", "raised", "one_raised", "flat")


def expression_for(expression_id: str | None) -> Expr:
    if expression_id is None:
        return EXPRESSIONS["neutral"]
    name = expression_id.removeprefix("expr.")
    if name in EXPRESSIONS:
        return EXPRESSIONS[name]
    k = digest("expr", expression_id)
    return Expr(_EYES[k[0] % len(_EYES)], _MOUTHS[k[1] % len(_MOUTHS)], _BROWS[k[2] % 6])


def other_expression(expression_id: str | None, seed: int) -> Expr:
    current = expression_for(expression_id)
    names = sorted(n for n, e in EXPRESSIONS.items() if e != current)
    return EXPRESSIONS[pick(digest("wrong_expr", expression_id, seed), names, None)]


def draw_face(pen: Pen, expr: Expr, r: float, look: Look) -> None:
    cy, ex, ey = HEAD_Y, 0.42 * r, HEAD_Y + 0.12 * r
    lw = 0.11
    if "blush" in expr.extras:
        for s in (-1, 1):
            pen.poly(
                ellipse((s * 0.62 * r, cy - 0.22 * r), 0.22 * r, 0.12 * r, 12), (245, 140, 150)
            )
    if "green" in expr.extras:
        pen.poly(ellipse((0, cy - 0.45 * r), 0.55 * r, 0.2 * r, 14), (150, 200, 100))
    for s in (-1, 1):
        x = s * ex
        if expr.eyes in ("dot", "look_up", "look_down", "half"):
            dy = {"look_up": 0.1, "look_down": -0.1}.get(expr.eyes, 0.0) * r
            pen.circle((x, ey), 0.25 * r, WHITE, INK)
            pen.circle((x, ey + dy), 0.12 * r, INK)
            if expr.eyes == "half":
                pen.poly(ellipse((x, ey), 0.27 * r, 0.27 * r, 10, 0, 180), look.body)
                pen.line([(x - 0.27 * r, ey), (x + 0.27 * r, ey)], lw, INK)
        elif expr.eyes == "wide":
            pen.circle((x, ey + 0.05 * r), 0.32 * r, WHITE, INK)
            pen.circle((x, ey + 0.05 * r), 0.1 * r, INK)
        elif expr.eyes == "closed_up":
            pen.line(ellipse((x, ey - 0.05 * r), 0.22 * r, 0.18 * r, 8, 20, 160), lw, INK)
        else:  # closed
            pen.line(ellipse((x, ey + 0.05 * r), 0.22 * r, 0.12 * r, 8, 200, 340), lw, INK)
        by = ey + 0.42 * r
        if expr.brows == "angry":
            pen.line([(s * 0.72 * r, by + 0.12 * r), (s * 0.15 * r, by - 0.12 * r)], 0.14, INK)
        elif expr.brows == "sad":
            pen.line([(s * 0.72 * r, by - 0.1 * r), (s * 0.15 * r, by + 0.12 * r)], 0.12, INK)
        elif expr.brows == "raised" or (expr.brows == "one_raised" and s == 1):
            pen.line(ellipse((x, by + 0.05 * r), 0.3 * r, 0.12 * r, 8, 20, 160), 0.12, INK)
        elif expr.brows in ("flat", "one_raised"):
            pen.line([(x - 0.28 * r, by - 0.05 * r), (x + 0.28 * r, by - 0.05 * r)], 0.14, INK)
    my = cy - 0.48 * r
    mouth = expr.mouth
    if mouth == "line":
        pen.line([(-0.3 * r, my), (0.3 * r, my)], lw, INK)
    elif mouth == "smile":
        pen.line(ellipse((0, my + 0.15 * r), 0.42 * r, 0.3 * r, 12, 200, 340), lw * 1.2, INK)
    elif mouth == "grin":
        pen.poly(ellipse((0, my + 0.1 * r), 0.45 * r, 0.38 * r, 16, 180, 360), (150, 30, 40), INK)
    elif mouth == "frown":
        pen.line(ellipse((0, my - 0.2 * r), 0.38 * r, 0.25 * r, 12, 25, 155), lw * 1.2, INK)
    elif mouth == "o":
        pen.circle((0, my - 0.05 * r), 0.2 * r, (150, 30, 40), INK)
    elif mouth == "wavy":
        pen.line(
            [(-0.35 * r + 0.1 * i * r, my + (0.06 if i % 2 else -0.06) * r) for i in range(8)],
            lw,
            INK,
        )
    elif mouth == "side":
        pen.line([(-0.1 * r, my - 0.05 * r), (0.35 * r, my + 0.08 * r)], lw, INK)
    else:  # small
        pen.circle((0, my), 0.1 * r, (150, 30, 40), INK)
    if "tears" in expr.extras:
        for s in (-1, 1):
            pen.poly(
                [
                    (s * ex - 0.08, ey - 0.35 * r),
                    (s * ex + 0.08, ey - 0.35 * r),
                    (s * ex, ey - 0.15 * r),
                    *ellipse((s * ex, ey - 0.42 * r), 0.1, 0.12, 8, 180, 360),
                ],
                (80, 150, 240),
            )
    if "sweat" in expr.extras:
        pen.poly(ellipse((1.05 * r, cy + 0.55 * r), 0.12, 0.2, 10), (120, 190, 250), INK)
    if "anger" in expr.extras:
        c = (0.95 * r, cy + 0.95 * r)
        for a in (45, 135, 225, 315):
            d = (math.cos(math.radians(a)) * 0.32, math.sin(math.radians(a)) * 0.32)
            pen.line(
                [(c[0] + d[0] * 0.35, c[1] + d[1] * 0.35), (c[0] + d[0], c[1] + d[1])],
                0.12,
                (220, 30, 30),
            )
    if "zzz" in expr.extras:
        pen.text((1.3 * r, cy + 1.1 * r), "z Z", 0.7, (70, 90, 200))
    if "think" in expr.extras:
        pen.circle((1.2 * r, cy + 1.15 * r), 0.12, WHITE, INK)
        pen.circle((1.5 * r, cy + 1.55 * r), 0.2, WHITE, INK)
        pen.text((2.0 * r, cy + 1.95 * r), "?", 0.8)
