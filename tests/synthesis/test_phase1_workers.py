"""Phase I through real Celery worker processes (not eager), on the configured DB and broker.

On CI this runs twice: SQLite + the filesystem broker, and PostgreSQL + Redis.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from review.models import ReviewItem
from synthesis.models import Character, GateAttempt, ModelCall
from synthesis.services.characters import batch_launch_characters
from synthesis.states import AttemptStatus, CallStatus, CharacterStatus
from tests.conftest import Workers, wait_until

RESTING = {CharacterStatus.DISCARDED, CharacterStatus.PENDING_HV1}


@pytest.mark.worker
def test_fifty_characters_through_real_workers(celery_workers: Workers, settings: Any) -> None:
    celery_workers.env.update(HILAPP_TEMPLATE_SIZE="256")
    celery_workers.start(concurrency=2)
    batch = batch_launch_characters(
        count=50, seed=11, params={"sim": {"faults": {"low_viescore": 0.3}}}
    )

    def settled() -> bool:
        return batch.characters.filter(status__in=RESTING).count() == 50

    try:
        wait_until(settled, timeout=300, message="50 characters to reach HV1 or discard")
    except AssertionError:
        print(celery_workers.logs())
        raise

    statuses = Counter(batch.characters.values_list("status", flat=True))
    assert set(statuses) <= RESTING
    # ~30% low scores, and the gate discards each of them.
    assert 5 <= statuses[CharacterStatus.DISCARDED] <= 25, statuses
    # none lost, none doubled: one attempt per character, one HV1 item per survivor
    assert Character.objects.filter(batch=batch).count() == 50
    attempts = GateAttempt.objects.filter(character__batch=batch)
    assert attempts.count() == 50
    assert set(attempts.values_list("status", flat=True)) <= {
        AttemptStatus.PASSED,
        AttemptStatus.FAILED,
    }
    hv1 = ReviewItem.objects.filter(stage="hv1")
    assert hv1.count() == statuses[CharacterStatus.PENDING_HV1]
    assert set(hv1.values_list("subject_id", flat=True)) == set(
        batch.characters.filter(status=CharacterStatus.PENDING_HV1).values_list("pk", flat=True)
    )
    # the ledger: one row per model call, each with cost and latency
    calls = ModelCall.objects.filter(batch=batch)
    assert calls.filter(status=CallStatus.OK).count() == 50 * 4
    assert not calls.exclude(status=CallStatus.OK).exists()
    assert not calls.filter(latency_ms__isnull=True).exists()
    assert all(call.cost_usd > 0 for call in calls)
    per_attempt = Counter(calls.exclude(attempt=None).values_list("attempt_id", flat=True))
    assert set(per_attempt.values()) == {3}  # render + SC + PQ
