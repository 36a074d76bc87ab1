"""Story frames: figures laid out by composition, labelled, over a caption band."""

from __future__ import annotations

import itertools
import random
from collections.abc import Collection, Sequence

from PIL import Image, ImageDraw

from hilapp.imaging import font

from .faults import degrade, stray_object
from .figure_drawing import draw_figure_with_faults
from .figures import Figure
from .hashing import digest, pick
from .labels import draw_label, fit_label, wrap_text
from .layouts import COMPOSITION_LAYOUT, LAYOUTS
from .pen import INK, WHITE, Pt


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
    key = digest("frame", frame_text, seed)
    tint = (248 - key[0] % 10, 248 - key[1] % 10, 248 - key[2] % 10)
    image = Image.new("RGB", (size, size), tint)
    draw = ImageDraw.Draw(image)
    caption_size = max(12, size // 40)
    caption_lines = wrap_text(draw, frame_text, caption_size, size * 0.94, 4)
    band = round(caption_size * (1.25 * max(1, len(caption_lines)) + 0.9))
    scene_h = size - band

    shown = [f for f in figures if f.cid not in missing_cids]
    if "missing_character" in faults and not missing_cids and len(shown) > 1:
        shown = shown[:-1]
    layout_name = COMPOSITION_LAYOUT.get(composition_ids[0] if composition_ids else "", "full")
    if "wrong_composition" in faults:
        layout_name = pick(digest("wrong_comp", layout_name, seed), sorted(LAYOUTS), layout_name)
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
    placements = LAYOUTS[layout_name](max(1, len(shown)), size, scene_h)
    victim = seed % len(shown) if shown else -1
    tilt = 12.0 if composition_ids and composition_ids[0] == "comp.dutch_angle" else 0.0

    xs = sorted(foot[0] for foot, _ in placements[: len(shown)])
    spacing = min((b - a for a, b in itertools.pairwise(xs)), default=float(size))
    labels: list[tuple[Pt, list[str], int]] = []
    for i, (figure, (foot, unit)) in enumerate(zip(shown, placements, strict=False)):
        hit = faults if i == victim else ()
        draw_figure_with_faults(
            draw, figure, faults=hit, seed=seed, foot=foot, unit=unit, extra_tilt=tilt
        )
        lines = [
            figure.name,
            figure.pose_id or "pose: (none)",
            figure.expression_id or "expr: (none)",
        ]
        label_size = fit_label(draw, lines, int(min(26, max(13, unit * 0.55))), spacing)
        labels.append(((foot[0], foot[1] + unit * 0.3), lines, label_size))
    if "object_fault" in faults:
        stray_object(draw, (size, scene_h), random.Random(seed))
    for center, lines, label_size in labels:
        draw_label(draw, center, lines, label_size, (size, scene_h))

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
    return degrade(image, seed) if "low_quality" in faults else image
