"""Batches: the check every step makes before it starts new work.

A leaf below the phase services (characters, stories, references import it). Launching,
pausing, resuming and cancelling sit on top of them, in ``synthesis.services.batch_lifecycle``;
launch parameters are cleaned in ``synthesis.services.launch_params``.
"""

from __future__ import annotations

from synthesis.models import Batch
from synthesis.states import BatchStatus


def batch_accepts_work(batch: Batch) -> bool:
    """New units of work start only in a running batch (paused: later; cancelled: never)."""
    return batch.status == BatchStatus.RUNNING
