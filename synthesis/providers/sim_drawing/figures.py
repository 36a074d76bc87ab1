"""A figure (CID, name, palette, category, pose, expression) and the look its CID gives it.

The look (colours, body and head shape, pattern, category features, CID badge) is a pure
function of the CID, palette and category.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, replace

from PIL import ImageColor

from .hashing import digest
from .pen import RGB

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


@dataclass(frozen=True)
class Look:
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


def shade(c: RGB, f: float) -> RGB:
    return (min(255, round(c[0] * f)), min(255, round(c[1] * f)), min(255, round(c[2] * f)))


def _hue_shift(c: RGB, turn: float) -> RGB:
    h, s, v = colorsys.rgb_to_hsv(*(x / 255 for x in c))
    r, g, b = colorsys.hsv_to_rgb((h + turn) % 1.0, max(s, 0.5), max(v, 0.5))
    return (round(r * 255), round(g * 255), round(b * 255))


def figure_look(figure: Figure, *, drift: bool = False) -> Look:
    key = digest("look", figure.cid)
    parsed = [c for c in (_parse(p) for p in figure.palette) if c is not None]
    colours = parsed + [_hash_colour(key, 10 + 3 * i) for i in range(3 - min(3, len(parsed)))]
    body, accent, detail = colours[0], colours[1], colours[2]
    category = figure.category if figure.category in CATEGORIES else "default"
    look = Look(
        body=body,
        accent=accent,
        detail=detail,
        outline=shade(body, 0.35),
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
            outline=shade(_hue_shift(body, 0.5), 0.35),
            body_shape=(look.body_shape + 1) % 3,
            head_shape=(look.head_shape + 1) % 3,
            pattern=(look.pattern + 2) % 4,
            category=others[key[5] % len(others)],
        )
    return look
