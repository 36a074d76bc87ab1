"""Drawings for the offline ``sim`` provider: readable stand-ins for the image models' outputs.

A figure's look (colours, body and head shape, category features, pattern, CID badge) is a pure
function of its CID, palette and category. Poses and expressions are drawn from small parameter
tables (limb angles; eyes/brows/mouth), with a hash-derived fallback for unlisted IDs, and are
always labelled too. Injected faults are drawn visibly; the caller records them in PNG metadata.

There is no randomness except what ``seed`` selects, and every hash is SHA-256 (never ``hash()``,
which is salted per process), so equal arguments give equal pixels in any process.
"""

from __future__ import annotations

import colorsys
import hashlib
import itertools
import math
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

from PIL import Image, ImageColor, ImageDraw

from hilapp.imaging import font

RGB = tuple[int, int, int]
Pt = tuple[float, float]
WHITE: RGB = (255, 255, 255)
INK: RGB = (25, 25, 35)

FAULTS = frozenset(
    {
        "low_quality",
        "identity_drift",
        "wrong_pose",
        "wrong_expression",
        "missing_character",
        "wrong_composition",
        "color_fault",
        "object_fault",
    }
)
CATEGORIES = (
    "mammal",
    "bird",
    "reptile_amphibian",
    "marine_life",
    "plant",
    "mythology",
    "human",
    "object_robot",
)


@dataclass(frozen=True)
class Figure:
    cid: str
    name: str
    palette: tuple[str, ...]  # '#rrggbb'
    category: str
    pose_id: str | None = None
    expression_id: str | None = None


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()


def _pick(key: bytes, options: Sequence[str], avoid: str | None) -> str:
    choices = [o for o in options if o != avoid] or list(options)
    return choices[int.from_bytes(key[:4], "big") % len(choices)]


# ---------------------------------------------------------------------------------------- look


@dataclass(frozen=True)
class _Look:
    body: RGB
    accent: RGB
    detail: RGB
    outline: RGB
    body_shape: int  # 0 round, 1 boxy, 2 pear
    head_shape: int  # 0 circle, 1 rounded square, 2 wide oval
    head_scale: float
    pattern: int  # 0 none, 1 stripes, 2 spots, 3 belly patch
    variant: int  # picks between category feature variants
    category: str
    badge: str


def _hash_colour(key: bytes, index: int) -> RGB:
    h = key[index] / 255
    r, g, b = colorsys.hsv_to_rgb(h, 0.55 + key[index + 1] / 600, 0.6 + key[index + 2] / 700)
    return (round(r * 255), round(g * 255), round(b * 255))


def _parse(colour: str) -> RGB | None:
    try:
        rgb = ImageColor.getrgb(colour)
    except ValueError:
        return None
    return (rgb[0], rgb[1], rgb[2])


def _shade(c: RGB, f: float) -> RGB:
    return (min(255, round(c[0] * f)), min(255, round(c[1] * f)), min(255, round(c[2] * f)))


def _hue_shift(c: RGB, turn: float) -> RGB:
    h, s, v = colorsys.rgb_to_hsv(*(x / 255 for x in c))
    r, g, b = colorsys.hsv_to_rgb((h + turn) % 1.0, max(s, 0.5), max(v, 0.5))
    return (round(r * 255), round(g * 255), round(b * 255))


def _look(figure: Figure, *, drift: bool = False) -> _Look:
    key = _digest("look", figure.cid)
    parsed = [c for c in (_parse(p) for p in figure.palette) if c is not None]
    colours = parsed + [_hash_colour(key, 10 + 3 * i) for i in range(3 - min(3, len(parsed)))]
    body, accent, detail = colours[0], colours[1], colours[2]
    category = figure.category if figure.category in CATEGORIES else "default"
    look = _Look(
        body=body,
        accent=accent,
        detail=detail,
        outline=_shade(body, 0.35),
        body_shape=key[0] % 3,
        head_shape=2 if category == "object_robot" and key[1] % 3 == 0 else key[1] % 3,
        head_scale=0.85 + key[2] / 255 * 0.35,
        pattern=key[3] % 4,
        variant=key[4],
        category=category,
        badge=figure.cid if len(figure.cid) <= 10 else figure.cid[:9] + "…",
    )
    if category == "object_robot":
        look = replace(look, head_shape=1)
    if drift:
        # Wrong colours and a different silhouette: what an identity failure looks like.
        others = [c for c in CATEGORIES if c != category]
        look = replace(
            look,
            body=_hue_shift(body, 0.5),
            accent=_hue_shift(accent, 0.33),
            detail=_hue_shift(detail, 0.5),
            outline=_shade(_hue_shift(body, 0.5), 0.35),
            body_shape=(look.body_shape + 1) % 3,
            head_shape=(look.head_shape + 1) % 3,
            pattern=(look.pattern + 2) % 4,
            category=others[key[5] % len(others)],
        )
    return look


# ------------------------------------------------------------------------ pose and expression

Limb = tuple[float, float]  # absolute angles in degrees: 0 down, 90 outward, 180 up, <0 inward


@dataclass(frozen=True)
class _Pose:
    arms: tuple[Limb, Limb]  # (left, right) as seen in the picture
    legs: tuple[Limb, Limb] = ((6, 3), (6, 3))
    tilt: float = 0.0  # degrees, counter-clockwise
    lift: float = 0.0  # units above the ground
    prop: str = ""
    hip_height: float | None = None
    reach: float = 1.0  # forearm length factor (crossed arms reach across the chest)


_POSES: dict[str, _Pose] = {
    "standing_neutral": _Pose(((15, 10), (15, 10))),
    "arms_crossed": _Pose(((5, -100), (5, -80)), reach=1.6),
    "hands_on_hips": _Pose(((50, -40), (50, -40)), ((10, 6), (10, 6))),
    "walking": _Pose(((-20, -10), (25, 20)), ((-12, -5), (18, 8))),
    "running": _Pose(((70, 140), (-30, -10)), ((60, -5), (-25, -40)), -8, prop="speed"),
    "jumping": _Pose(((150, 165), (150, 165)), ((40, -15), (40, -15)), lift=2.2, prop="jump"),
    "sitting_chair": _Pose(((20, 70), (20, 70)), ((72, 0), (72, 0)), prop="chair"),
    "sitting_ground": _Pose(((35, 20), (35, 20)), ((80, 95), (80, 95)), prop="ground"),
    "kneeling": _Pose(((15, 10), (15, 10)), ((5, -95), (5, -95))),
    "crouching": _Pose(((40, -20), (40, -20)), ((65, -30), (65, -30))),
    "lying_down": _Pose(((6, 4), (6, 4)), ((3, 0), (3, 0)), 90, prop="ground", hip_height=1.8),
    "pointing": _Pose(((15, 10), (90, 90)), prop="point"),
    "waving": _Pose(((15, 10), (135, 170)), prop="wave"),
    "reading": _Pose(((25, -75), (25, -75)), prop="book"),
    "writing": _Pose(((25, -75), (35, -55)), prop="paper"),
    "fighting_stance": _Pose(((45, 160), (45, 160)), ((25, 10), (25, 10))),
    "attacking": _Pose(((45, 160), (90, 90)), ((30, 10), (-10, -5)), -6, prop="impact"),
    "casting_spell": _Pose(((100, 125), (100, 125)), prop="spell"),
    "carrying_object": _Pose(((35, -80), (35, -80)), prop="box"),
    "reaching_up": _Pose(((15, 10), (172, 178))),
    "thinking_pose": _Pose(((10, -60), (20, -170)), prop="think"),
    "hands_raised": _Pose(((160, 170), (160, 170))),
    "bowing": _Pose(((5, 0), (5, 0)), tilt=28),
    "hugging": _Pose(((80, -70), (80, -70)), prop="heart"),
    "falling": _Pose(((140, 170), (120, 100)), ((40, 60), (20, -20)), 35, 1.5, "fall"),
    "leaning_wall": _Pose(((15, 10), (30, -40)), ((6, 3), (20, -10)), -12, prop="wall"),
}


def _pose(pose_id: str | None) -> _Pose:
    if pose_id is None:
        return _POSES["standing_neutral"]
    name = pose_id.removeprefix("pose.")
    if name in _POSES:
        return _POSES[name]
    k = _digest("pose", pose_id)
    return _Pose(
        arms=((-40 + k[0] % 200, -60 + k[1] % 220), (-40 + k[2] % 200, -60 + k[3] % 220)),
        legs=((-10 + k[4] % 60, -30 + k[5] % 80), (-10 + k[6] % 60, -30 + k[7] % 80)),
        tilt=-15 + k[8] % 31,
    )


@dataclass(frozen=True)
class _Expr:
    eyes: str = "dot"  # dot, wide, closed_up, closed, half, look_up, look_down
    mouth: str = "line"  # line, smile, grin, frown, o, wavy, side, small
    brows: str = ""  # angry, sad, raised, one_raised, flat
    extras: tuple[str, ...] = ()  # blush, tears, sweat, zzz, think, anger, green


_EXPRESSIONS: dict[str, _Expr] = {
    "neutral": _Expr(),
    "happy": _Expr("dot", "smile", "", ("blush",)),
    "laughing": _Expr("closed_up", "grin", "raised", ("blush",)),
    "sad": _Expr("dot", "frown", "sad", ("tears",)),
    "angry": _Expr("dot", "frown", "angry", ("anger",)),
    "surprised": _Expr("wide", "o", "raised"),
    "fearful": _Expr("wide", "wavy", "sad", ("sweat",)),
    "disgusted": _Expr("half", "side", "one_raised", ("green",)),
    "determined": _Expr("half", "line", "flat"),
    "thoughtful": _Expr("look_up", "side", "one_raised", ("think",)),
    "embarrassed": _Expr("look_down", "wavy", "", ("blush", "sweat")),
    "sleepy": _Expr("closed", "small", "", ("zzz",)),
}
_EYES = ("dot", "wide", "closed_up", "closed", "half", "look_up", "look_down")
_MOUTHS = ("line", "smile", "grin", "frown", "o", "wavy", "side", "small")
_BROWS = ("", "angry", "sad", "raised", "one_raised", "flat")


def _expression(expression_id: str | None) -> _Expr:
    if expression_id is None:
        return _EXPRESSIONS["neutral"]
    name = expression_id.removeprefix("expr.")
    if name in _EXPRESSIONS:
        return _EXPRESSIONS[name]
    k = _digest("expr", expression_id)
    return _Expr(_EYES[k[0] % len(_EYES)], _MOUTHS[k[1] % len(_MOUTHS)], _BROWS[k[2] % 6])


def _other_pose(pose_id: str | None, seed: int) -> _Pose:
    current = _pose(pose_id)
    names = sorted(n for n, p in _POSES.items() if p != current)
    return _POSES[_pick(_digest("wrong_pose", pose_id, seed), names, None)]


def _other_expression(expression_id: str | None, seed: int) -> _Expr:
    current = _expression(expression_id)
    names = sorted(n for n, e in _EXPRESSIONS.items() if e != current)
    return _EXPRESSIONS[_pick(_digest("wrong_expr", expression_id, seed), names, None)]


# ------------------------------------------------------------------------------- the figure


class _Pen:
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


def _ellipse(
    c: Pt, rx: float, ry: float, n: int = 28, start: float = 0, end: float = 360
) -> list[Pt]:
    steps = [start + (end - start) * i / (n - 1 if end - start < 360 else n) for i in range(n)]
    return [
        (c[0] + rx * math.cos(math.radians(a)), c[1] + ry * math.sin(math.radians(a)))
        for a in steps
    ]


def _limb_points(origin: Pt, side: int, limb: Limb, lengths: tuple[float, float]) -> list[Pt]:
    pts = [origin]
    x, y = origin
    for angle, length in zip(limb, lengths, strict=True):
        a = math.radians(angle)
        x, y = x + side * math.sin(a) * length, y - math.cos(a) * length
        pts.append((x, y))
    return pts


_ARM = (1.5, 1.4)
_LEG = (1.6, 1.5)
HEAD_Y = 4.6


def _hip_height(pose: _Pose) -> float:
    if pose.hip_height is not None:
        return pose.hip_height
    lowest = min(
        p[1]
        for s, leg in ((-1, pose.legs[0]), (1, pose.legs[1]))
        for p in _limb_points((s * 0.7, 0), s, leg, _LEG)
    )
    return -lowest + 0.35 + pose.lift


def _body_outline(shape: int) -> list[Pt]:
    if shape == 0:
        return _ellipse((0, 1.45), 1.55, 1.95)
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


def _head_outline(shape: int, r: float) -> list[Pt]:
    c = (0.0, HEAD_Y)
    if shape == 0:
        return _ellipse(c, r, r)
    if shape == 1:
        a, b = r * 1.05, r * 0.6
        return [
            (c[0] + x, c[1] + y)
            for x, y in ((-a, -b), (-b, -a), (b, -a), (a, -b), (a, b), (b, a), (-b, a), (-a, b))
        ]
    return _ellipse(c, r * 1.25, r * 0.9)


def _draw_features_back(pen: _Pen, look: _Look, r: float) -> None:
    """Category features behind the body and head: tails, wings, fins, petals, hair."""
    cat, v, ol = look.category, look.variant, look.outline
    top = HEAD_Y + r
    if cat == "mammal":
        pen.line([(1.2, 0.2), (2.4, 0.0), (2.9, 1.0), (2.6, 1.8)], 0.45, _shade(look.body, 0.8), ol)
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
            pen.poly(_ellipse((s * 0.55, top + 0.55), 0.65, 0.28, 12), (70, 160, 70), ol)
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
            pen.line(_ellipse((0, top + 0.45), r * 0.9, 0.3, 24), 0.12, (230, 190, 40))
    elif cat == "object_robot":
        pen.line([(0, top), (0, top + 1.0)], 0.12, (90, 90, 100))
        pen.circle((0, top + 1.1), 0.28, (230, 60, 60), ol)
    elif cat == "default":
        for s in (-1, 1):
            pen.line([(s * 0.4, top - 0.2), (s * 0.9, top + 0.8)], 0.12, look.outline)
            pen.circle((s * 0.9, top + 0.85), 0.2, look.accent, ol)


def _draw_features_front(pen: _Pen, look: _Look, r: float) -> None:
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
                _ellipse((0, HEAD_Y + 0.35 * r), r * 1.05, r * 0.75, 20, 0, 180), look.detail, ol
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
                _ellipse((0, HEAD_Y + 0.35 * r), r * 1.05, r * 0.7, 20, 0, 180), look.detail, ol
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


def _draw_face(pen: _Pen, expr: _Expr, r: float, look: _Look) -> None:
    cy, ex, ey = HEAD_Y, 0.42 * r, HEAD_Y + 0.12 * r
    lw = 0.11
    if "blush" in expr.extras:
        for s in (-1, 1):
            pen.poly(
                _ellipse((s * 0.62 * r, cy - 0.22 * r), 0.22 * r, 0.12 * r, 12), (245, 140, 150)
            )
    if "green" in expr.extras:
        pen.poly(_ellipse((0, cy - 0.45 * r), 0.55 * r, 0.2 * r, 14), (150, 200, 100))
    for s in (-1, 1):
        x = s * ex
        if expr.eyes in ("dot", "look_up", "look_down", "half"):
            dy = {"look_up": 0.1, "look_down": -0.1}.get(expr.eyes, 0.0) * r
            pen.circle((x, ey), 0.25 * r, WHITE, INK)
            pen.circle((x, ey + dy), 0.12 * r, INK)
            if expr.eyes == "half":
                pen.poly(_ellipse((x, ey), 0.27 * r, 0.27 * r, 10, 0, 180), look.body)
                pen.line([(x - 0.27 * r, ey), (x + 0.27 * r, ey)], lw, INK)
        elif expr.eyes == "wide":
            pen.circle((x, ey + 0.05 * r), 0.32 * r, WHITE, INK)
            pen.circle((x, ey + 0.05 * r), 0.1 * r, INK)
        elif expr.eyes == "closed_up":
            pen.line(_ellipse((x, ey - 0.05 * r), 0.22 * r, 0.18 * r, 8, 20, 160), lw, INK)
        else:  # closed
            pen.line(_ellipse((x, ey + 0.05 * r), 0.22 * r, 0.12 * r, 8, 200, 340), lw, INK)
        by = ey + 0.42 * r
        if expr.brows == "angry":
            pen.line([(s * 0.72 * r, by + 0.12 * r), (s * 0.15 * r, by - 0.12 * r)], 0.14, INK)
        elif expr.brows == "sad":
            pen.line([(s * 0.72 * r, by - 0.1 * r), (s * 0.15 * r, by + 0.12 * r)], 0.12, INK)
        elif expr.brows == "raised" or (expr.brows == "one_raised" and s == 1):
            pen.line(_ellipse((x, by + 0.05 * r), 0.3 * r, 0.12 * r, 8, 20, 160), 0.12, INK)
        elif expr.brows in ("flat", "one_raised"):
            pen.line([(x - 0.28 * r, by - 0.05 * r), (x + 0.28 * r, by - 0.05 * r)], 0.14, INK)
    my = cy - 0.48 * r
    mouth = expr.mouth
    if mouth == "line":
        pen.line([(-0.3 * r, my), (0.3 * r, my)], lw, INK)
    elif mouth == "smile":
        pen.line(_ellipse((0, my + 0.15 * r), 0.42 * r, 0.3 * r, 12, 200, 340), lw * 1.2, INK)
    elif mouth == "grin":
        pen.poly(_ellipse((0, my + 0.1 * r), 0.45 * r, 0.38 * r, 16, 180, 360), (150, 30, 40), INK)
    elif mouth == "frown":
        pen.line(_ellipse((0, my - 0.2 * r), 0.38 * r, 0.25 * r, 12, 25, 155), lw * 1.2, INK)
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
                    *_ellipse((s * ex, ey - 0.42 * r), 0.1, 0.12, 8, 180, 360),
                ],
                (80, 150, 240),
            )
    if "sweat" in expr.extras:
        pen.poly(_ellipse((1.05 * r, cy + 0.55 * r), 0.12, 0.2, 10), (120, 190, 250), INK)
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


def _draw_props(pen: _Pen, pose: _Pose, look: _Look, hands: tuple[Pt, Pt], front: bool) -> None:
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
            pen.line(_ellipse(hr, 0.5 + 0.35 * i, 0.5 + 0.35 * i, 6, -30, 40), 0.1, INK)
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


def _badge(draw: ImageDraw.ImageDraw, at: Pt, text: str, size: int, outline: RGB) -> None:
    f = font(size)
    half = draw.textlength(text, font=f) / 2 + size * 0.3
    box = (at[0] - half, at[1] - size * 0.75, at[0] + half, at[1] + size * 0.75)
    draw.rectangle(box, fill=WHITE, outline=outline, width=max(1, size // 8))
    draw.text(at, text, fill=INK, font=f, anchor="mm")


def _draw_figure(
    draw: ImageDraw.ImageDraw,
    look: _Look,
    pose: _Pose,
    expr: _Expr,
    *,
    foot: Pt,
    unit: float,
    extra_tilt: float = 0.0,
) -> tuple[Pt, Pt]:
    """Draw one figure standing on ``foot`` (pixels); returns its (head, hip) pixel centres."""
    hip = (foot[0], foot[1] - _hip_height(pose) * unit)
    pen = _Pen(draw, hip, unit, pose.tilt + extra_tilt)
    ol = look.outline
    r = 1.55 * look.head_scale
    if pose.prop == "ground":
        ground = pen.pt((0, -0.35)) if pose.tilt == 0 else (hip[0], foot[1])
        draw.ellipse(
            (
                ground[0] - 3.2 * unit,
                ground[1] - 0.35 * unit,
                ground[0] + 3.2 * unit,
                ground[1] + 0.35 * unit,
            ),
            fill=(215, 205, 190),
        )
    elif pose.lift:
        draw.ellipse(
            (
                foot[0] - 1.6 * unit,
                foot[1] - 0.3 * unit,
                foot[0] + 1.6 * unit,
                foot[1] + 0.3 * unit,
            ),
            fill=(200, 200, 200),
        )
    arm = (_ARM[0], _ARM[1] * pose.reach)
    hands = (
        _limb_points((-1.25, 2.6), -1, pose.arms[0], arm)[-1],
        _limb_points((1.25, 2.6), 1, pose.arms[1], arm)[-1],
    )
    _draw_props(pen, pose, look, hands, front=False)
    _draw_features_back(pen, look, r)
    for s, leg in ((-1, pose.legs[0]), (1, pose.legs[1])):
        pts = _limb_points((s * 0.7, 0.0), s, leg, _LEG)
        pen.line(pts, 0.7, _shade(look.body, 0.85), ol)
        pen.poly(
            _ellipse((pts[-1][0] + s * 0.15, pts[-1][1] - 0.1), 0.55, 0.3, 12), look.detail, ol
        )
    pen.poly(_body_outline(look.body_shape), look.body, ol)
    if look.pattern == 1:
        for y in (0.6, 1.5, 2.4):
            pen.line([(-0.9, y), (0.9, y)], 0.22, look.accent)
    elif look.pattern == 2:
        for c in ((-0.8, 2.2), (0.7, 2.5), (0.9, 0.9), (-0.6, 0.7)):
            pen.circle(c, 0.28, look.accent)
    elif look.pattern == 3:
        pen.poly(_ellipse((0, 1.3), 0.95, 1.35, 20), look.accent)
    _badge(draw, pen.pt((0, 0.45)), look.badge, max(8, round(0.42 * unit)), ol)
    pen.poly(_head_outline(look.head_shape, r), look.body, ol)
    _draw_features_front(pen, look, r)
    _draw_face(pen, expr, r, look)
    for s, limb in ((-1, pose.arms[0]), (1, pose.arms[1])):
        pts = _limb_points((s * 1.25, 2.6), s, limb, arm)
        pen.line(pts, 0.55, _shade(look.body, 0.92), ol)
        pen.circle(pts[-1], 0.38, look.accent, ol)
    _draw_props(pen, pose, look, hands, front=True)
    return pen.pt((0, HEAD_Y)), hip


# ----------------------------------------------------------------------------- faults, labels


def _label(
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


def _fit_label(draw: ImageDraw.ImageDraw, lines: Sequence[str], size: int, room: float) -> int:
    """The largest font size up to ``size`` (at least 10) at which the label fits ``room``."""
    longest = max(lines, key=len)
    while size > 10 and draw.textlength(longest, font=font(size)) + size * 1.3 > room:
        size -= 1
    return size


def _blotch(draw: ImageDraw.ImageDraw, center: Pt, radius: float, key: bytes) -> None:
    pts = []
    for i in range(14):
        rr = radius * (0.6 + key[i % 32] / 255 * 0.6)
        a = math.radians(i * 360 / 14)
        pts.append((center[0] + rr * math.cos(a), center[1] + rr * math.sin(a)))
    draw.polygon(pts, fill=(255, 0, 200))


def _stray_object(draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: random.Random) -> None:
    """A floating neon cube: something no prompt asked for."""
    s = min(size) * 0.09
    x, y = rng.uniform(0.1, 0.9 - 0.09) * size[0], rng.uniform(0.08, 0.35) * size[1]
    d = s * 0.4
    front = [(x, y + d), (x + s, y + d), (x + s, y + s + d), (x, y + s + d)]
    draw.polygon(
        [(x, y + d), (x + d, y), (x + s + d, y), (x + s, y + d)],
        fill=(120, 255, 80),
        outline=INK,
        width=3,
    )
    draw.polygon(
        [(x + s, y + d), (x + s + d, y), (x + s + d, y + s), (x + s, y + s + d)],
        fill=(60, 180, 40),
        outline=INK,
        width=3,
    )
    draw.polygon(front, fill=(90, 230, 60), outline=INK, width=3)
    draw.text(
        (x + s / 2, y + d + s / 2), "?", fill=(255, 0, 200), font=font(round(s * 0.8)), anchor="mm"
    )


def _degrade(image: Image.Image, seed: int) -> Image.Image:
    """Blocky, blurred, noisy, washed out: unmistakably low quality."""
    w, h = image.size
    small = image.resize((max(1, w // 12), max(1, h // 12)), Image.Resampling.BOX)
    image = small.resize((w, h), Image.Resampling.BILINEAR)
    image = Image.blend(image, Image.new("RGB", (w, h), (205, 200, 195)), 0.45)
    noise = Image.frombytes("L", (w, h), random.Random(seed).randbytes(w * h)).convert("RGB")
    return Image.blend(image, noise, 0.3)


# ------------------------------------------------------------------------------ public API


def _single(
    figure: Figure, size: int, faults: Collection[str], seed: int, labelled: bool
) -> Image.Image:
    image = Image.new("RGB", (size, size), WHITE)
    draw = ImageDraw.Draw(image)
    look = _look(figure, drift="identity_drift" in faults)
    pose = _other_pose(figure.pose_id, seed) if "wrong_pose" in faults else _pose(figure.pose_id)
    expr = (
        _other_expression(figure.expression_id, seed)
        if "wrong_expression" in faults
        else _expression(figure.expression_id)
    )
    unit = size / 15.5
    foot = (size / 2, size * 0.74 if labelled else size * 0.84)
    _head, hip = _draw_figure(draw, look, pose, expr, foot=foot, unit=unit)
    if "color_fault" in faults:
        _blotch(
            draw, (hip[0] + 0.3 * unit, hip[1] - 1.6 * unit), 1.3 * unit, _digest("blotch", seed)
        )
    if "object_fault" in faults:
        _stray_object(draw, image.size, random.Random(seed))
    name_size = max(10, size // 45)
    if labelled:
        lines = [figure.pose_id or "pose: (none)", figure.expression_id or "expr: (none)"]
        _label(
            draw, (size / 2, size * 0.79), lines, max(12, size // 30), (size, size - name_size * 2)
        )
    draw.text(
        (size / 2, size - name_size * 1.1),
        figure.name,
        fill=(90, 90, 90),
        font=font(name_size),
        anchor="mm",
    )
    return image


def draw_template(
    figure: Figure, *, size: int = 1024, degraded: bool = False, seed: int = 0
) -> Image.Image:
    """A CID template: full body, neutral pose, pure white background, exactly sizexsize RGB."""
    neutral = replace(figure, pose_id=None, expression_id=None)
    image = _single(neutral, size, (), seed, labelled=False)
    return _degrade(image, seed) if degraded else image


def draw_reference(
    figure: Figure,
    *,
    size: int = 1024,
    degraded: bool = False,
    faults: Collection[str] = (),
    seed: int = 0,
) -> Image.Image:
    """A reference: the figure in its pose and expression, both drawn and labelled."""
    image = _single(figure, size, faults, seed, labelled=True)
    return _degrade(image, seed) if degraded or "low_quality" in faults else image


Layout = Callable[[int, int, int], list[tuple[Pt, float]]]  # (n, width, height) -> (foot, unit)


def _row(
    n: int, width: int, foot_y: float, unit: float, left: float = 0.0, right: float = 1.0
) -> list[tuple[Pt, float]]:
    span = (right - left) * width
    return [((left * width + span * (i + 0.5) / n, foot_y), unit) for i in range(n)]


def _layout_full(n: int, w: int, h: int) -> list[tuple[Pt, float]]:
    unit = min(h * 0.7 / 11.5, w / (n * 6.2))
    return _row(n, w, h * 0.8, unit)


def _layout_close(n: int, w: int, h: int) -> list[tuple[Pt, float]]:
    # Head and chest only: the feet always fall below the picture.
    unit = min(h / 7.0, w / (n * 2.8))
    return _row(n, w, max(h * 0.36 + 7.9 * unit, h + 2.5 * unit), unit)


def _layout_extreme(n: int, w: int, h: int) -> list[tuple[Pt, float]]:
    unit = min(h / 4.2, w / (n * 2.4))
    return _row(n, w, max(h * 0.5 + 7.9 * unit, h + 4.5 * unit), unit)


def _layout_medium(n: int, w: int, h: int) -> list[tuple[Pt, float]]:
    unit = min(h / 10.0, w / (n * 4.8))
    return _row(n, w, h * 0.3 + 7.9 * unit, unit)


def _layout_wide(n: int, w: int, h: int) -> list[tuple[Pt, float]]:
    lo, hi = (0.25, 0.75) if n <= 2 else (0.08, 0.92)
    return _row(n, w, h * 0.78, min(h / 32, (hi - lo) * w / (n * 6.5)), lo, hi)


def _layout_thirds_left(n: int, w: int, h: int) -> list[tuple[Pt, float]]:
    unit = min(h * 0.6 / 11.5, w * 0.5 / (n * 5.5))
    return _row(n, w, h * 0.8, unit, 0.08, 0.58)


def _layout_thirds_right(n: int, w: int, h: int) -> list[tuple[Pt, float]]:
    unit = min(h * 0.6 / 11.5, w * 0.5 / (n * 5.5))
    return _row(n, w, h * 0.8, unit, 0.42, 0.92)


def _layout_over_shoulder(n: int, w: int, h: int) -> list[tuple[Pt, float]]:
    big = h / 5.5
    rest = _row(max(1, n - 1), w, h * 0.72, min(h * 0.5 / 11.5, w * 0.55 / (n * 5.5)), 0.4, 0.95)
    return [((w * 0.08, h * 0.45 + 7.9 * big), big), *rest][:n]


def _layout_low_angle(n: int, w: int, h: int) -> list[tuple[Pt, float]]:
    unit = min(h * 0.85 / 11.5, w / (n * 5.2))
    return _row(n, w, h * 0.98, unit)


_LAYOUTS: dict[str, Layout] = {
    "full": _layout_full,
    "close": _layout_close,
    "extreme": _layout_extreme,
    "medium": _layout_medium,
    "wide": _layout_wide,
    "thirds_left": _layout_thirds_left,
    "thirds_right": _layout_thirds_right,
    "over_shoulder": _layout_over_shoulder,
    "low_angle": _layout_low_angle,
}
_COMPOSITION_LAYOUT = {
    "comp.close_up": "close",
    "comp.extreme_close_up": "extreme",
    "comp.medium_shot": "medium",
    "comp.two_shot": "medium",
    "comp.wide_shot": "wide",
    "comp.establishing_shot": "wide",
    "comp.birds_eye": "wide",
    "comp.high_angle": "wide",
    "comp.rule_of_thirds_left": "thirds_left",
    "comp.rule_of_thirds_right": "thirds_right",
    "comp.over_the_shoulder": "over_shoulder",
    "comp.foreground_framing": "over_shoulder",
    "comp.low_angle": "low_angle",
}


def _wrap(
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


def draw_frame(
    figures: Sequence[Figure],
    *,
    frame_text: str,
    composition_ids: Sequence[str],
    size: int = 1024,
    faults: Collection[str] = (),
    seed: int = 0,
    missing_cids: Collection[str] = (),
) -> Image.Image:
    """A story frame: figures laid out by the first composition ID, labelled, with a caption.

    Figures whose CID is in ``missing_cids`` are left out. The ``missing_character`` fault with
    no ``missing_cids`` leaves out the last figure. Per-figure faults (identity, pose,
    expression, colour) hit one figure chosen by ``seed``.
    """
    key = _digest("frame", frame_text, seed)
    tint = (248 - key[0] % 10, 248 - key[1] % 10, 248 - key[2] % 10)
    image = Image.new("RGB", (size, size), tint)
    draw = ImageDraw.Draw(image)
    caption_size = max(12, size // 40)
    caption_lines = _wrap(draw, frame_text, caption_size, size * 0.94, 4)
    band = round(caption_size * (1.25 * max(1, len(caption_lines)) + 0.9))
    scene_h = size - band

    shown = [f for f in figures if f.cid not in missing_cids]
    if "missing_character" in faults and not missing_cids and len(shown) > 1:
        shown = shown[:-1]
    layout_name = _COMPOSITION_LAYOUT.get(composition_ids[0] if composition_ids else "", "full")
    if "wrong_composition" in faults:
        layout_name = _pick(_digest("wrong_comp", layout_name, seed), sorted(_LAYOUTS), layout_name)
    if layout_name == "wide":
        draw.polygon(
            [
                (0, scene_h * 0.8),
                (size * 0.3, scene_h * 0.62),
                (size * 0.65, scene_h * 0.78),
                (size, scene_h * 0.66),
                (size, scene_h),
                (0, scene_h),
            ],
            fill=(205, 230, 195),
        )
        draw.ellipse((size * 0.8, size * 0.08, size * 0.9, size * 0.18), fill=(252, 215, 90))
    placements = _LAYOUTS[layout_name](max(1, len(shown)), size, scene_h)
    victim = seed % len(shown) if shown else -1
    tilt = 12.0 if composition_ids and composition_ids[0] == "comp.dutch_angle" else 0.0

    xs = sorted(foot[0] for foot, _ in placements[: len(shown)])
    spacing = min((b - a for a, b in itertools.pairwise(xs)), default=float(size))
    labels: list[tuple[Pt, list[str], int]] = []
    for i, (figure, (foot, unit)) in enumerate(zip(shown, placements, strict=False)):
        hit = faults if i == victim else ()
        look = _look(figure, drift="identity_drift" in hit)
        pose = _other_pose(figure.pose_id, seed) if "wrong_pose" in hit else _pose(figure.pose_id)
        expr = (
            _other_expression(figure.expression_id, seed)
            if "wrong_expression" in hit
            else _expression(figure.expression_id)
        )
        _head, hip = _draw_figure(draw, look, pose, expr, foot=foot, unit=unit, extra_tilt=tilt)
        if "color_fault" in hit:
            _blotch(
                draw,
                (hip[0] + 0.3 * unit, hip[1] - 1.6 * unit),
                1.3 * unit,
                _digest("blotch", seed),
            )
        lines = [
            figure.name,
            figure.pose_id or "pose: (none)",
            figure.expression_id or "expr: (none)",
        ]
        label_size = _fit_label(draw, lines, int(min(26, max(13, unit * 0.55))), spacing)
        labels.append(((foot[0], foot[1] + unit * 0.3), lines, label_size))
    if "object_fault" in faults:
        _stray_object(draw, (size, scene_h), random.Random(seed))
    for center, lines, label_size in labels:
        _label(draw, center, lines, label_size, (size, scene_h))

    draw.rectangle((0, scene_h, size, size), fill=WHITE)
    draw.line((0, scene_h, size, scene_h), fill=(150, 150, 150), width=2)
    f = font(caption_size)
    for i, line in enumerate(caption_lines):
        draw.text((size * 0.03, scene_h + caption_size * (0.45 + 1.25 * i)), line, fill=INK, font=f)
    comp_label = ", ".join(composition_ids) or "comp: (none)"
    comp_font = font(max(11, size // 50))
    cw = draw.textlength(comp_label, font=comp_font)
    draw.rectangle((0, 0, cw + size // 40, size // 50 * 1.8), fill=(40, 40, 60))
    draw.text((size // 80, size // 50 * 0.9), comp_label, fill=WHITE, font=comp_font, anchor="lm")
    return _degrade(image, seed) if "low_quality" in faults else image
