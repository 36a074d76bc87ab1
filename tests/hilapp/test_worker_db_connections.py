"""The default worker, started as the docs start it, keeps its database connection across tasks,
and connects afresh after the database dropped it.

Celery's Django fix-up would close every connection before and after each task; a new
PostgreSQL connection per task cost more worker CPU than the task's own queries
(``benchmarks/paper_scale.py``). The worker runs with the documented production environment
(DEBUG off), and its connections are watched in ``pg_stat_activity`` under its own application
name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from hilapp.celery import app
from tests.conftest import wait_until
from tests.model_fakes import ModelFakes
from tests.topology.cluster import Cluster, deployment_environment

APP_NAME = "hilapp-conn-test"
RECONCILE = "synthesis.tasks.reconcile"

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]


@pytest.fixture
def default_worker(transactional_db: Any, tmp_path: Path, local_s3: Any) -> Iterator[Cluster]:
    fakes = ModelFakes().start()
    env = deployment_environment(local_s3.bucket(), fakes)
    env.update(HILAPP_DEFAULT_CONCURRENCY="1", PGAPPNAME=APP_NAME)
    nodes = Cluster(tmp_path, env)
    nodes.start("worker-default")
    try:
        yield nodes
    finally:
        nodes.stop()
        fakes.close()


def _backends() -> list[tuple[int, Any]]:
    """(pid, backend_start) of the worker's connections."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = %s",
            [APP_NAME],
        )
        return list(cursor.fetchall())


def _send(count: int) -> None:
    for _ in range(count):
        app.send_task(RECONCILE, queue="celery")


def _succeeded(nodes: Cluster) -> int:
    lines = nodes.log_of("worker-default").splitlines()
    return sum(1 for line in lines if RECONCILE in line and "succeeded" in line)


def test_the_default_worker_reuses_its_connection_and_replaces_a_dropped_one(
    default_worker: Cluster,
) -> None:
    nodes = default_worker
    _send(1)
    try:
        # Without reuse the connection is closed as the task ends, so none is ever left open.
        wait_until(lambda: len(_backends()) == 1, timeout=60, message="the worker's connection")
    except AssertionError:
        print(nodes.logs())
        raise
    ((pid, started),) = _backends()

    _send(20)
    wait_until(lambda: _succeeded(nodes) >= 21, timeout=60, message="21 tasks")
    assert _backends() == [(pid, started)], "one connection, the same, served all 21 tasks"

    # The database drops it (a restart, an idle timeout): a task fails on it, the worker closes
    # it, and the next tasks connect afresh.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(lambda: not _backends(), timeout=10, message="the connection to be gone")
    for sent in range(1, 6):
        _send(1)
        try:
            wait_until(lambda: len(_backends()) == 1, timeout=5, message="a new connection")
            break
        except AssertionError:
            assert sent < 5, nodes.logs()
    ((new_pid, _),) = _backends()
    assert new_pid != pid
    wait_until(lambda: _succeeded(nodes) >= 22, timeout=30, message="22 tasks")
