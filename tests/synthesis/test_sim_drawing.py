import pytest
from PIL import Image, ImageChops

from synthesis.providers.sim_drawing import (
    FAULTS,
    Figure,
    draw_frame,
    draw_reference,
    draw_template,
)

FOX = Figure(
    "cid_0001",
    "Pip the Fox",
    ("#e07a2f", "#ffffff", "#3a2a1a"),
    "mammal",
    "pose.arms_crossed",
    "expr.surprised",
)
OWL = Figure(
    "cid_0002", "Sage Owl", ("#6b4fa0", "#f2d16b", "#2a2a2a"), "bird", "pose.waving", "expr.happy"
)
BOT = Figure(
    "cid_0003",
    "Bolt",
    ("#4a90c0", "#c0c0c0", "#222222"),
    "object_robot",
    "pose.sitting_chair",
    "expr.angry",
)


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a, b).getbbox() is None


def count_colour(image: Image.Image, hex_colour: str) -> int:
    rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return dict((c, n) for n, c in image.getcolors(maxcolors=1 << 20)).get(rgb, 0)


def frame(figures=(FOX, OWL, BOT), **kwargs) -> Image.Image:
    kwargs.setdefault("frame_text", "Pip crosses his arms while Sage waves and Bolt sits.")
    kwargs.setdefault("composition_ids", ["comp.full_shot"])
    return draw_frame(list(figures), **kwargs)


def test_template_is_square_rgb_on_pure_white():
    image = draw_template(FOX)
    assert image.size == (1024, 1024)
    assert image.mode == "RGB"
    for corner in [(0, 0), (1023, 0), (0, 1023), (1023, 1023)]:
        assert image.getpixel(corner) == (255, 255, 255)
    assert count_colour(image, "#e07a2f") > 20_000  # the body is drawn in the palette colour


def test_template_ignores_pose_and_expression():
    assert same(
        draw_template(FOX), draw_template(Figure(FOX.cid, FOX.name, FOX.palette, FOX.category))
    )


@pytest.mark.parametrize("size", [256, 512])
def test_template_respects_size(size):
    assert draw_template(FOX, size=size).size == (size, size)


def test_same_inputs_give_identical_pixels():
    assert same(draw_template(FOX), draw_template(FOX))
    assert same(
        draw_reference(FOX, faults={"low_quality"}, seed=3),
        draw_reference(FOX, faults={"low_quality"}, seed=3),
    )
    assert same(frame(faults=set(FAULTS), seed=7), frame(faults=set(FAULTS), seed=7))


def test_different_cids_look_different_even_with_the_same_palette():
    twin = Figure("cid_9999", FOX.name, FOX.palette, FOX.category)
    assert not same(draw_template(FOX), draw_template(twin))
    assert not same(draw_template(FOX), draw_template(OWL))


def test_reference_pose_and_expression_change_the_picture():
    base = draw_reference(FOX)
    for pose in ["pose.waving", "pose.sitting_chair", "pose.lying_down", "pose.some_unlisted_pose"]:
        assert not same(base, draw_reference(Figure(**{**FOX.__dict__, "pose_id": pose})))
    for expr in ["expr.happy", "expr.sad", "expr.neutral", "expr.some_unlisted_expr"]:
        assert not same(base, draw_reference(Figure(**{**FOX.__dict__, "expression_id": expr})))


@pytest.mark.parametrize(
    "fault",
    [
        "wrong_pose",
        "identity_drift",
        "low_quality",
        "wrong_expression",
        "color_fault",
        "object_fault",
    ],
)
def test_reference_faults_are_visible(fault):
    assert not same(draw_reference(FOX), draw_reference(FOX, faults={fault}))


def test_identity_drift_changes_the_colours():
    drifted = draw_reference(FOX, faults={"identity_drift"})
    assert count_colour(drifted, "#e07a2f") < count_colour(draw_reference(FOX), "#e07a2f") / 10


def test_degraded_template_is_not_clean():
    assert not same(draw_template(FOX), draw_template(FOX, degraded=True))


@pytest.mark.parametrize(
    "fault",
    [
        "wrong_pose",
        "identity_drift",
        "low_quality",
        "wrong_composition",
        "color_fault",
        "object_fault",
    ],
)
def test_frame_faults_are_visible(fault):
    assert not same(frame(seed=1), frame(seed=1, faults={fault}))


def test_frame_is_square_and_seeded():
    image = frame()
    assert image.size == (1024, 1024)
    assert not same(image, frame(composition_ids=["comp.close_up"]))
    assert not same(image, frame(composition_ids=["comp.wide_shot"]))


def test_missing_character_removes_that_figure():
    clean = frame()
    missing = frame(faults={"missing_character"}, missing_cids={OWL.cid})
    assert count_colour(clean, OWL.palette[0]) > 5_000
    assert count_colour(missing, OWL.palette[0]) == 0
    assert count_colour(missing, FOX.palette[0]) > 5_000


def test_missing_character_fault_without_cids_drops_the_last_figure():
    assert count_colour(frame(faults={"missing_character"}), BOT.palette[0]) == 0


def test_unknown_category_and_empty_palette_still_draw():
    odd = Figure("x", "Odd", (), "unknown_category", "pose.nope", "expr.nope")
    assert draw_reference(odd).size == (1024, 1024)
    assert frame(figures=[odd], composition_ids=[]).size == (1024, 1024)
    assert frame(figures=[], composition_ids=["comp.wide_shot"]).size == (1024, 1024)
