"""A crashed api worker at its documented concurrency loses and duplicates nothing.

The api worker runs as the docs start it (``python -m hilapp.processes worker-api``) with the
documented default of ``HILAPP_API_CONCURRENCY`` (200 threads), beside a default worker and
beat, on PostgreSQL + Redis + S3 (moto), each in its own working directory. OpenAI and Gemini
are the wire-format fakes, answering after a second. When a hundred calls are in flight at the
fakes, the api worker is killed with SIGKILL, in the middle of all of them, and started again.
Every character must still come to rest exactly once, no gate attempt may pass twice, and the
ledger must account for every answered request (a call cut by the kill may have been answered).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hilapp.processes import API_CONCURRENCY
from tests.conftest import wait_until
from tests.model_fakes import ModelFakes
from tests.topology.cluster import Cluster, deployment_environment

CHARACTERS = 150
# Enough in flight that the kill strikes far more calls than the old 32 threads could hold.
IN_FLIGHT_AT_KILL = 100
RESTING = ("pending_hv1", "discarded", "failed")


@pytest.fixture
def api_cluster(
    transactional_db: Any, tmp_path: Path, local_s3: Any
) -> Iterator[tuple[Cluster, ModelFakes]]:
    fakes = ModelFakes(latency_s=1.0).start()
    env = deployment_environment(local_s3.bucket(), fakes)
    env.pop("HILAPP_API_CONCURRENCY", None)  # the documented default, as a deployment has it
    nodes = Cluster(tmp_path, env)  # no release step: the test database is migrated already
    for name in ("worker-default", "worker-api", "beat"):
        nodes.start(name)
    try:
        yield nodes, fakes
    finally:
        nodes.stop()
        fakes.close()


@pytest.mark.topology
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.worker
def test_killing_the_api_worker_with_its_calls_in_flight_loses_and_duplicates_nothing(
    api_cluster: tuple[Cluster, ModelFakes],
) -> None:
    from synthesis.models import Character, GateAttempt, ModelCall, StatusChange
    from synthesis.states import CallStatus

    nodes, fakes = api_cluster
    assert API_CONCURRENCY >= 200
    nodes.launch_api_characters(CHARACTERS, seed=5)
    try:
        wait_until(
            lambda: fakes.stats()["in_flight"] >= IN_FLIGHT_AT_KILL,
            timeout=120,
            interval=0.05,
            message=f"{IN_FLIGHT_AT_KILL} calls in flight at the fakes",
        )
        nodes.kill("worker-api")
        nodes.start("worker-api")

        wait_until(
            lambda: Character.objects.filter(status__in=RESTING).count() == CHARACTERS,
            timeout=420,
            interval=1,
            message=f"all {CHARACTERS} characters to come to rest",
        )
    except AssertionError:
        print(nodes.logs())
        raise

    # Nothing lost: every character reached HV1 (the fakes pass every gate).
    assert Character.objects.filter(status="pending_hv1").count() == CHARACTERS
    # Nothing duplicated: one resting transition per character, one passed attempt per round.
    rests: dict[int, int] = {}
    for object_id in StatusChange.objects.filter(model="character", new="pending_hv1").values_list(
        "object_id", flat=True
    ):
        rests[object_id] = rests.get(object_id, 0) + 1
    assert len(rests) == CHARACTERS and set(rests.values()) == {1}
    passed = list(
        GateAttempt.objects.filter(status="passed").values_list("kind", "character", "round")
    )
    assert passed and len(passed) == len(set(passed))
    # The ledger: every answered request is on it; a call cut by the kill is started/abandoned.
    answered = fakes.stats()["answered"]
    cut_total = 0
    for provider in ("openai", "gemini"):
        calls = ModelCall.objects.filter(provider=provider)
        ok = calls.filter(status=CallStatus.OK).count()
        cut = calls.filter(status__in=(CallStatus.STARTED, CallStatus.ABANDONED)).count()
        cut_total += cut
        assert ok <= answered.get(provider, 0) <= ok + cut, (provider, ok, cut, answered)
    # The kill did strike calls mid-flight (their rows stay started/abandoned), and the work was
    # taken up again, not lost.
    assert cut_total >= IN_FLIGHT_AT_KILL // 2, cut_total
