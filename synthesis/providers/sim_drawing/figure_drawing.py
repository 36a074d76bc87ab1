"""One whole figure on the canvas: shadow, props, features, legs, body, badge, head, face, arms."""

from __future__ import annotations

from collections.abc import Collection

from PIL import ImageDraw

from hilapp.imaging import font

from .faces import Expr, draw_face, expression_for, other_expression
from .faults import blotch
from .figures import Figure, Look, figure_look, shade
from .hashing import digest
from .pen import HEAD_Y, INK, RGB, WHITE, Pen, Pt, ellipse
from .poses import ARM, LEG, Pose, hip_height, limb_points, other_pose, pose_for
from .props import draw_props
from .silhouettes import body_outline, draw_features_back, draw_features_front, head_outline


def _badge(draw: ImageDraw.ImageDraw, at: Pt, text: str, size: int, outline: RGB) -> None:
    f = font(size)
    half = draw.textlength(text, font=f) / 2 + size * 0.3
    box = (at[0] - half, at[1] - size * 0.75, at[0] + half, at[1] + size * 0.75)
    draw.rectangle(box, fill=WHITE, outline=outline, width=max(1, size // 8))
    draw.text(at, text, fill=INK, font=f, anchor="mm")


def draw_figure(
    draw: ImageDraw.ImageDraw,
    look: Look,
    pose: Pose,
    expr: Expr,
    *,
    foot: Pt,
    unit: float,
    extra_tilt: float = 0.0,
) -> tuple[Pt, Pt]:
    """Draw one figure standing on ``foot`` (pixels); returns its (head, hip) pixel centres."""
    hip = (foot[0], foot[1] - hip_height(pose) * unit)
    pen = Pen(draw, hip, unit, pose.tilt + extra_tilt)
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
    arm = (ARM[0], ARM[1] * pose.reach)
    hands = (
        limb_points((-1.25, 2.6), -1, pose.arms[0], arm)[-1],
        limb_points((1.25, 2.6), 1, pose.arms[1], arm)[-1],
    )
    draw_props(pen, pose, hands, front=False)
    draw_features_back(pen, look, r)
    for s, leg in ((-1, pose.legs[0]), (1, pose.legs[1])):
        pts = limb_points((s * 0.7, 0.0), s, leg, LEG)
        pen.line(pts, 0.7, shade(look.body, 0.85), ol)
        pen.poly(ellipse((pts[-1][0] + s * 0.15, pts[-1][1] - 0.1), 0.55, 0.3, 12), look.detail, ol)
    pen.poly(body_outline(look.body_shape), look.body, ol)
    if look.pattern == 1:
        for y in (0.6, 1.5, 2.4):
            pen.line([(-0.9, y), (0.9, y)], 0.22, look.accent)
    elif look.pattern == 2:
        for c in ((-0.8, 2.2), (0.7, 2.5), (0.9, 0.9), (-0.6, 0.7)):
            pen.circle(c, 0.28, look.accent)
    elif look.pattern == 3:
        pen.poly(ellipse((0, 1.3), 0.95, 1.35, 20), look.accent)
    _badge(draw, pen.pt((0, 0.45)), look.badge, max(8, round(0.42 * unit)), ol)
    pen.poly(head_outline(look.head_shape, r), look.body, ol)
    draw_features_front(pen, look, r)
    draw_face(pen, expr, r, look)
    for s, limb in ((-1, pose.arms[0]), (1, pose.arms[1])):
        pts = limb_points((s * 1.25, 2.6), s, limb, arm)
        pen.line(pts, 0.55, shade(look.body, 0.92), ol)
        pen.circle(pts[-1], 0.38, look.accent, ol)
    draw_props(pen, pose, hands, front=True)
    return pen.pt((0, HEAD_Y)), hip


def draw_figure_with_faults(
    draw: ImageDraw.ImageDraw,
    figure: Figure,
    *,
    faults: Collection[str],
    seed: int,
    foot: Pt,
    unit: float,
    extra_tilt: float = 0.0,
) -> None:
    """Draw ``figure`` hit by the per-figure faults in ``faults`` (identity, pose, expression,
    colour); ``seed`` picks the wrong pose or expression."""
    look = figure_look(figure, drift="identity_drift" in faults)
    pose = other_pose(figure.pose_id, seed) if "wrong_pose" in faults else pose_for(figure.pose_id)
    expr = (
        other_expression(figure.expression_id, seed)
        if "wrong_expression" in faults
        else expression_for(figure.expression_id)
    )
    _head, hip = draw_figure(draw, look, pose, expr, foot=foot, unit=unit, extra_tilt=extra_tilt)
    if "color_fault" in faults:
        blotch(draw, (hip[0] + 0.3 * unit, hip[1] - 1.6 * unit), 1.3 * unit, digest("blotch", seed))
