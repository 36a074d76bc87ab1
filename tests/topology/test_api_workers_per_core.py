"""One api worker process per core, as docs/deploy.md sizes an API host.

A Python process runs Python on one core at a time, so an API host runs one
``python -m hilapp.processes worker-api`` per core, each with its own ``HILAPP_NODE_NAME``.
Two of them here, each in its own working directory with the documented production environment,
beside a default worker and beat, on PostgreSQL + Redis + S3 (moto), with the wire-format fakes:
both take calls from the one ``api`` queue (the ledger names the worker of every call), every
character comes to rest once, its gate runs in the task that drafted it (no gate message is
received), and their PostgreSQL connections stay within two pools.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from hilapp.processes import API_DB_POOL_MAX_SIZE
from tests.conftest import wait_until
from tests.model_fakes import ModelFakes
from tests.topology.cluster import Cluster, deployment_environment

CHARACTERS = 60
NODES = ("apihost-1", "apihost-2")


@pytest.fixture
def api_host(
    transactional_db: Any, tmp_path: Path, local_s3: Any
) -> Iterator[tuple[Cluster, ModelFakes]]:
    fakes = ModelFakes(latency_s=0.5).start()
    env = deployment_environment(local_s3.bucket(), fakes)
    env.pop("HILAPP_API_CONCURRENCY", None)  # the documented default
    nodes = Cluster(tmp_path, env)
    nodes.start("worker-default")
    nodes.start("beat")
    for node in NODES:
        nodes.start(
            "worker-api",
            as_=f"worker-api-{node}",
            env={"HILAPP_NODE_NAME": node, "PGAPPNAME": "hilapp-api-per-core"},
        )
    try:
        yield nodes, fakes
    finally:
        nodes.stop()
        fakes.close()


def _api_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            ["hilapp-api-per-core"],
        )
        return int(cursor.fetchone()[0])


@pytest.mark.topology
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.worker
def test_two_api_workers_on_one_host_share_the_api_queue(
    api_host: tuple[Cluster, ModelFakes],
) -> None:
    from synthesis.models import Character, ModelCall, StatusChange

    nodes, fakes = api_host
    nodes.launch_api_characters(CHARACTERS, seed=9)
    peak = 0

    def rested() -> bool:
        nonlocal peak
        peak = max(peak, _api_connections())
        return Character.objects.filter(status="pending_hv1").count() == CHARACTERS

    try:
        wait_until(rested, timeout=180, interval=0.5, message="every character at HV1")
    except AssertionError:
        print(nodes.logs())
        raise

    workers = set(ModelCall.objects.values_list("worker", flat=True))
    assert {f"api@{node}" for node in NODES} <= workers, workers
    rests = StatusChange.objects.filter(model="character", new="pending_hv1")
    assert rests.count() == CHARACTERS
    assert 0 < peak <= len(NODES) * API_DB_POOL_MAX_SIZE, peak
    # every request the fakes answered is one ok row of the ledger, and no more
    ok = ModelCall.objects.filter(status="ok").count()
    assert ok == sum(fakes.stats()["answered"].values()) == CHARACTERS * 4
    # each character's gate ran in the task that drafted it (steps handed on, not sent)
    logs = "".join(nodes.log_of(f"worker-api-{node}") for node in NODES)
    assert logs.count("character_draft[") >= CHARACTERS
    assert "gate_advance[" not in logs
