"""The three gate policies by attempt kind (character templates, references, frames)."""

from __future__ import annotations

from synthesis.gate import GatePolicy
from synthesis.services.characters import CHARACTER_GATE
from synthesis.services.frames import FRAME_GATE
from synthesis.services.references import REFERENCE_GATE
from synthesis.states import AttemptKind

POLICIES: dict[AttemptKind, GatePolicy] = {
    AttemptKind.CHARACTER: CHARACTER_GATE,
    AttemptKind.REFERENCE: REFERENCE_GATE,
    AttemptKind.FRAME: FRAME_GATE,
}


def policy_for(kind: AttemptKind) -> GatePolicy:
    return POLICIES[kind]
