"""The bucket goes away in the middle of a batch, on the production topology.

The default worker, the api worker and beat run as the docs start them
(``python -m hilapp.processes NAME``), DEBUG off, each in its own working directory, on
PostgreSQL + Redis, with OpenAI and Gemini as the wire-format fakes. The bucket (moto) is
reached through a relay whose link the test cuts (connections refused, open ones reset) and
restores. While it is cut, no render can be stored: the step gives up after ``AWS_MAX_ATTEMPTS``
tries and is left for the reconciler, which sends it again once its lease has run out. When the
link is back, every character comes to rest exactly once, with its template in the bucket.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.model_fakes import ModelFakes
from tests.s3 import Outage
from tests.topology.cluster import Cluster, deployment_environment

CHARACTERS = 6
JUDGED = ("pending_hv1", "discarded")  # a template was rendered, stored and judged
RESTING = (*JUDGED, "failed")
LEFT_FOR_RECONCILER = "step left for the reconciler"


@pytest.fixture
def cut_off_cluster(
    transactional_db: Any, tmp_path: Path, local_s3: Any
) -> Iterator[tuple[Cluster, Outage, str, Any]]:
    fakes = ModelFakes(latency_s=0.1).start()
    bucket = local_s3.bucket()
    link = Outage(local_s3.port).restore()
    env = deployment_environment({**bucket, "AWS_S3_ENDPOINT_URL": link.endpoint}, fakes)
    env["AWS_MAX_ATTEMPTS"] = "2"  # give up within a second, not botocore's ~25 s
    nodes = Cluster(tmp_path, env)
    for name in ("worker-default", "worker-api", "beat"):
        nodes.start(name)
    try:
        yield nodes, link, bucket["AWS_STORAGE_BUCKET_NAME"], local_s3.client()
    finally:
        nodes.stop()
        link.cut()
        fakes.close()


def _worker_logs(nodes: Cluster) -> str:
    return "\n".join(path.read_text(errors="replace") for path in nodes.base.glob("worker-*/*.log"))


@pytest.mark.topology
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.worker
def test_a_bucket_outage_mid_batch_costs_time_not_work(
    cut_off_cluster: tuple[Cluster, Outage, str, Any],
) -> None:
    from synthesis.models import Character, GateAttempt
    from synthesis.states import AttemptStatus

    nodes, link, bucket, s3 = cut_off_cluster
    link.cut()
    count = str(CHARACTERS)
    nodes.manage("launch_batch", "characters", "--count", count, "--seed", "3", host="web")
    try:
        # Drafts need no bucket; every render fails to store and is left for the reconciler.
        wait_until(
            lambda: _worker_logs(nodes).count(LEFT_FOR_RECONCILER) >= CHARACTERS,
            timeout=120,
            message="every render to be left for the reconciler",
        )
        assert not Character.objects.filter(status__in=JUDGED).exists()
        assert link.endpoint in _worker_logs(nodes)  # the message names the endpoint

        link.restore()
        wait_until(
            lambda: Character.objects.filter(status__in=RESTING).count() == CHARACTERS,
            timeout=180,
            message=f"{CHARACTERS} characters to rest once the bucket is back",
        )
    except AssertionError:
        print(nodes.logs())
        raise

    characters = list(Character.objects.all())
    assert len(characters) == CHARACTERS
    stored = {item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    for character in characters:
        attempts = GateAttempt.objects.filter(character=character)
        assert attempts.filter(status=AttemptStatus.PASSED).count() <= 1
        if character.status == "pending_hv1":
            assert character.template in stored
