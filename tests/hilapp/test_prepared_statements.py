"""On PostgreSQL a process prepares the statements it repeats, on kept and on pooled connections.

A worker runs the same few dozen statements thousands of times; with the parameters bound on
the server psycopg prepares a statement after its fifth run, and PostgreSQL stops parsing and
planning it (``benchmarks/paper_scale.py``: about a third less PostgreSQL CPU per model call).
Each case runs in its own process on the production settings (DEBUG off), with the connection
handling of the default worker (``DB_CONN_MAX_AGE``) or of the api worker (``DB_POOL_MAX_SIZE``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _database_url

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.postgres

# Four "tasks": each runs a step's lease claim (a hot-path UPDATE) six times on the connection
# it gets, then ends as Django ends a request (the connection goes back to the pool, or is kept).
# Each reports its connection's backend and what that connection had prepared before and after.
SCRIPT = """
import json
from django.db import connection
from synthesis import gate
from synthesis.models import GateAttempt

def prepared():
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]

tasks = []
for _ in range(4):
    before = prepared()
    claims = [gate._claim(GateAttempt(pk=0, status="pending")) for _ in range(6)]
    tasks.append({
        "backend": connection.connection.info.backend_pid,
        "claims": claims,
        "before": before,
        "after": prepared(),
    })
    connection.close_if_unusable_or_obsolete()
print(json.dumps(tasks))
"""


def _run_in_production_process(tmp_path: Path, **env: str) -> list[dict[str, Any]]:
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "DJANGO_SETTINGS_MODULE"))
    }
    clean.update(
        DJANGO_SETTINGS_MODULE="hilapp.settings.base",
        DATABASE_URL=_database_url(),
        SECRET_KEY="test-only",
        HILAPP_VAR_DIR=str(tmp_path),
        **env,
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SCRIPT],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    tasks: list[dict[str, Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return tasks


def _has_claim(statements: list[str]) -> bool:
    return any(
        'UPDATE "synthesis_gateattempt" SET "lease_until"' in statement for statement in statements
    )


@pytest.mark.parametrize(
    "connections",
    [{"DB_CONN_MAX_AGE": "600"}, {"DB_POOL_MAX_SIZE": "2"}],
    ids=["kept connection", "pooled connection"],
)
def test_a_repeated_statement_is_prepared_on_its_connection_for_its_life(
    transactional_db: Any, tmp_path: Path, connections: dict[str, str]
) -> None:
    tasks = _run_in_production_process(tmp_path, **connections)

    seen: set[int] = set()
    for task in tasks:
        assert task["claims"] == [False] * 6  # no attempt 0: the guarded update moves nothing
        assert _has_claim(task["after"]), task
        assert _has_claim(task["before"]) == (task["backend"] in seen), task
        seen.add(task["backend"])
    assert len(seen) < len(tasks)  # a connection came back (kept, or from the pool)
