"""Frame layouts: where each figure stands and how large, per composition ID."""

from __future__ import annotations

from collections.abc import Callable

from .pen import Pt

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


LAYOUTS: dict[str, Layout] = {
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
COMPOSITION_LAYOUT = {
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
