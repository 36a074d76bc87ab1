"""Drawings for the offline ``sim`` provider: readable stand-ins for the image models' outputs.

A figure's look (colours, body and head shape, category features, pattern, CID badge) is a pure
function of its CID, palette and category. Poses and expressions are drawn from small parameter
tables (limb angles; eyes/brows/mouth), with a hash-derived fallback for unlisted IDs, and are
always labelled too. Injected faults are drawn visibly; the caller records them in PNG metadata.

There is no randomness except what ``seed`` selects, and every hash is SHA-256 (never ``hash()``,
which is salted per process), so equal arguments give equal pixels in any process.
"""

from .faults import FAULTS
from .figures import CATEGORIES, Figure
from .frames import draw_frame
from .portraits import draw_reference, draw_template

__all__ = ["CATEGORIES", "FAULTS", "Figure", "draw_frame", "draw_reference", "draw_template"]
