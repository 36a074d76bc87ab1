"""Poses as limb-angle tables, with a hash-derived pose for unlisted IDs, and limb geometry."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .hashing import digest, pick
from .pen import Pt

Limb = tuple[float, float]  # absolute angles in degrees: 0 down, 90 outward, 180 up, <0 inward


@dataclass(frozen=True)
class Pose:
    arms: tuple[Limb, Limb]  # (left, right) as seen in the picture
    legs: tuple[Limb, Limb] = ((6, 3), (6, 3))
    tilt: float = 0.0  # degrees, counter-clockwise
    lift: float = 0.0  # units above the ground
    prop: str = ""
    hip_height: float | None = None
    reach: float = 1.0  # forearm length factor (crossed arms reach across the chest)


POSES: dict[str, Pose] = {
    "standing_neutral": Pose(((15, 10), (15, 10))),
    "arms_crossed": Pose(((5, -100), (5, -80)), reach=1.6),
    "hands_on_hips": Pose(((50, -40), (50, -40)), ((10, 6), (10, 6))),
    "walking": Pose(((-20, -10), (25, 20)), ((-12, -5), (18, 8))),
    "running": Pose(((70, 140), (-30, -10)), ((60, -5), (-25, -40)), -8, prop="speed"),
    "jumping": Pose(((150, 165), (150, 165)), ((40, -15), (40, -15)), lift=2.2, prop="jump"),
    "sitting_chair": Pose(((20, 70), (20, 70)), ((72, 0), (72, 0)), prop="chair"),
    "sitting_ground": Pose(((35, 20), (35, 20)), ((80, 95), (80, 95)), prop="ground"),
    "kneeling": Pose(((15, 10), (15, 10)), ((5, -95), (5, -95))),
    "crouching": Pose(((40, -20), (40, -20)), ((65, -30), (65, -30))),
    "lying_down": Pose(((6, 4), (6, 4)), ((3, 0), (3, 0)), 90, prop="ground", hip_height=1.8),
    "pointing": Pose(((15, 10), (90, 90)), prop="point"),
    "waving": Pose(((15, 10), (135, 170)), prop="wave"),
    "reading": Pose(((25, -75), (25, -75)), prop="book"),
    "writing": Pose(((25, -75), (35, -55)), prop="paper"),
    "fighting_stance": Pose(((45, 160), (45, 160)), ((25, 10), (25, 10))),
    "attacking": Pose(((45, 160), (90, 90)), ((30, 10), (-10, -5)), -6, prop="impact"),
    "casting_spell": Pose(((100, 125), (100, 125)), prop="spell"),
    "carrying_object": Pose(((35, -80), (35, -80)), prop="box"),
    "reaching_up": Pose(((15, 10), (172, 178))),
    "thinking_pose": Pose(((10, -60), (20, -170)), prop="think"),
    "hands_raised": Pose(((160, 170), (160, 170))),
    "bowing": Pose(((5, 0), (5, 0)), tilt=28),
    "hugging": Pose(((80, -70), (80, -70)), prop="heart"),
    "falling": Pose(((140, 170), (120, 100)), ((40, 60), (20, -20)), 35, 1.5, "fall"),
    "leaning_wall": Pose(((15, 10), (30, -40)), ((6, 3), (20, -10)), -12, prop="wall"),
}


def pose_for(pose_id: str | None) -> Pose:
    if pose_id is None:
        return POSES["standing_neutral"]
    name = pose_id.removeprefix("pose.")
    if name in POSES:
        return POSES[name]
    k = digest("pose", pose_id)
    return Pose(
        arms=((-40 + k[0] % 200, -60 + k[1] % 220), (-40 + k[2] % 200, -60 + k[3] % 220)),
        legs=((-10 + k[4] % 60, -30 + k[5] % 80), (-10 + k[6] % 60, -30 + k[7] % 80)),
        tilt=-15 + k[8] % 31,
    )


def other_pose(pose_id: str | None, seed: int) -> Pose:
    current = pose_for(pose_id)
    names = sorted(n for n, p in POSES.items() if p != current)
    return POSES[pick(digest("wrong_pose", pose_id, seed), names, None)]


def limb_points(origin: Pt, side: int, limb: Limb, lengths: tuple[float, float]) -> list[Pt]:
    pts = [origin]
    x, y = origin
    for angle, length in zip(limb, lengths, strict=True):
        a = math.radians(angle)
        x, y = x + side * math.sin(a) * length, y - math.cos(a) * length
        pts.append((x, y))
    return pts


ARM = (1.5, 1.4)
LEG = (1.6, 1.5)


def hip_height(pose: Pose) -> float:
    if pose.hip_height is not None:
        return pose.hip_height
    lowest = min(
        p[1]
        for s, leg in ((-1, pose.legs[0]), (1, pose.legs[1]))
        for p in limb_points((s * 0.7, 0), s, leg, LEG)
    )
    return -lowest + 0.35 + pose.lift
