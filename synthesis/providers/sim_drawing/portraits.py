"""Single-figure pictures: CID templates and references."""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import replace

from PIL import Image, ImageDraw

from hilapp.imaging import font

from .faults import degrade, stray_object
from .figure_drawing import draw_figure_with_faults
from .figures import Figure
from .labels import draw_label
from .pen import WHITE


def _single(
    figure: Figure, size: int, faults: Collection[str], seed: int, labelled: bool
) -> Image.Image:
    image = Image.new("RGB", (size, size), WHITE)
    draw = ImageDraw.Draw(image)
    unit = size / 15.5
    foot = (size / 2, size * 0.74 if labelled else size * 0.84)
    draw_figure_with_faults(draw, figure, faults=faults, seed=seed, foot=foot, unit=unit)
    if "object_fault" in faults:
        stray_object(draw, image.size, random.Random(seed))
    name_size = max(10, size // 45)
    if labelled:
        lines = [figure.pose_id or "pose: (none)", figure.expression_id or "expr: (none)"]
        draw_label(
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
    return degrade(image, seed) if degraded else image


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
    return degrade(image, seed) if degraded or "low_quality" in faults else image
