"""``docs/pipeline.md``'s table is the work-unit registry: same rows, real tasks, real services."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from hilapp.celery import app as celery_app
from synthesis import dispatch
from synthesis.providers.base import Role
from synthesis.work_units import WORK_UNITS, WorkUnit

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipeline.md"


def _table() -> list[list[str]]:
    text = DOC.read_text()
    start = text.index("<!-- pipeline-table")
    end = text.index("<!-- /pipeline-table -->")
    lines = [line for line in text[start:end].splitlines() if line.startswith("| ")][1:]
    return [[cell.strip().strip("`") for cell in line.strip("|").split("|")] for line in lines]


def _row(unit: WorkUnit, state: str) -> list[str]:
    service = f"{unit.service.__module__}.{unit.service.__qualname__}"
    waiting = ", ".join(f"`{s}`" for s in unit.waiting).strip("`") or "—"
    owner = "frame run, else batch" if unit.owner.phase3 else "batch"
    return [
        unit.name,
        f"{unit.model.__name__}.{unit.status_field} = `{state}",
        unit.task,
        service,
        unit.queue,
        waiting,
        owner,
    ]


def test_the_table_lists_every_working_state_of_the_registry_and_nothing_else() -> None:
    expected = [_row(unit, state) for unit in WORK_UNITS for state in unit.working]
    assert _table() == expected


def test_every_task_is_registered_and_every_service_exists() -> None:
    for name, _state, task, service, queue, _, _ in _table():
        assert task in celery_app.tasks, (name, task)
        module, _, attr = service.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attr)), service
        if queue != "default":
            roles = queue.removeprefix("by provider of ").split(" / ")
            assert set(roles) <= {r.value for r in Role}, (name, roles)


def test_every_task_name_dispatch_sends_is_registered() -> None:
    names = [v for k, v in vars(dispatch).items() if k.endswith("_TASK")]
    assert len(names) == 5
    for name in names:
        assert name in celery_app.tasks, name


def test_each_task_calls_the_service_the_table_names() -> None:
    # The task's step (``synthesis.tasks.STEPS``, what the task and a handed-on step both run)
    # names its service: the flow from a state to its code is one hop.
    tasks = importlib.import_module("synthesis.tasks")
    for _, _, task, service, _, _, _ in _table():
        assert task in tasks.STEPS, task
        body = inspect.getsource(tasks.STEPS[task])
        assert service.rpartition(".")[2] in body, (task, service)
