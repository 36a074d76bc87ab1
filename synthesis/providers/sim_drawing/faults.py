"""Injected faults, drawn visibly: a colour blotch, a stray object, low-quality degradation."""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

from hilapp.imaging import font

from .pen import INK, Pt

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


def blotch(draw: ImageDraw.ImageDraw, center: Pt, radius: float, key: bytes) -> None:
    pts = []
    for i in range(14):
        rr = radius * (0.6 + key[i % 32] / 255 * 0.6)
        a = math.radians(i * 360 / 14)
        pts.append((center[0] + rr * math.cos(a), center[1] + rr * math.sin(a)))
    draw.polygon(pts, fill=(255, 0, 200))


def stray_object(draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: random.Random) -> None:
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


def degrade(image: Image.Image, seed: int) -> Image.Image:
    """Blocky, blurred, noisy, washed out: unmistakably low quality."""
    w, h = image.size
    small = image.resize((max(1, w // 12), max(1, h // 12)), Image.Resampling.BOX)
    image = small.resize((w, h), Image.Resampling.BILINEAR)
    image = Image.blend(image, Image.new("RGB", (w, h), (205, 200, 195)), 0.45)
    noise = Image.frombytes("L", (w, h), random.Random(seed).randbytes(w * h)).convert("RGB")
    return Image.blend(image, noise, 0.3)
