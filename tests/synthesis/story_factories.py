"""Builders shared by the Phase II/III tests: locked characters with real template images."""

from __future__ import annotations

import random
from typing import Any

from hilapp.imaging import to_png
from synthesis.artifacts import save_png
from synthesis.models import Batch, Character
from synthesis.providers.sim_drawing import Figure, draw_template
from synthesis.states import BatchKind, BatchStatus, CharacterStatus

CATEGORIES = ("mammal", "mythology", "plant", "marine_life", "human", "bird", "insect", "robot")


def locked_characters(count: int, *, size: int = 128, seed: int = 0) -> list[Character]:
    """``count`` locked CIDs as HV1 would leave them (concept, template, scores)."""
    rng = random.Random(seed)
    batch = Batch.objects.create(
        kind=BatchKind.CHARACTERS, requested=count, seed=seed, status=BatchStatus.DONE
    )
    made = []
    for index in range(count):
        palette = [
            "#{:02x}{:02x}{:02x}".format(*(rng.randint(30, 225) for _ in range(3)))
            for _ in range(3)
        ]
        cid = f"T{batch.pk}-{index:03d}"
        name = f"Hero{index}"
        figure = Figure(
            cid=cid, name=name, palette=tuple(palette), category=CATEGORIES[index % len(CATEGORIES)]
        )
        template, _ = save_png(
            to_png(draw_template(figure, size=size, seed=index)), folder="character"
        )
        made.append(
            Character.objects.create(
                batch=batch,
                index=index,
                cid=cid,
                status=CharacterStatus.LOCKED,
                subject_category=figure.category,
                subject_type="fox",
                profession_category="x",
                profession="librarian",
                name=name,
                visual_description=f"A small fox librarian in a {palette[0]} coat.",
                palette=palette,
                template=template,
                viescore_overall=8.5,
            )
        )
    return made


def sim_params(**rates: float) -> dict[str, Any]:
    return {"sim": {"faults": rates}}
