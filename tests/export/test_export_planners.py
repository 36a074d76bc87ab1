"""Exports planned by forked planner processes: the same files whatever their number; a planner
that fails or dies fails the export with the reason and publishes nothing; inside a transaction
(rows the planners could not see) the export plans in its own process."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from synthesis.export import card, planning
from synthesis.export.options import ExportError, ExportOptions
from synthesis.export.service import dataset_export
from synthesis.models import Frame
from tests.export.conftest import Simulated

EVERYTHING = ExportOptions(
    formats=("webdataset", "parquet", "omnigen2"),
    holdout_characters=2,
    holdout_stories=2,
    shard_max_bytes=40960,
)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _count_planners(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The planner processes forked from now on, by the number of planners each pool had."""
    pools: list[int] = []
    real_init = planning.Planners.__init__

    def init(self: Any, count: int, selection: Any) -> None:
        pools.append(count)
        real_init(self, count, selection)

    monkeypatch.setattr(planning.Planners, "__init__", init)
    return pools


@pytest.mark.django_db(transaction=True)
def test_the_same_files_with_any_number_of_planners(
    simulated: Simulated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planning, "CHUNK_STORIES", 2)  # several story ranges per planner
    pools = _count_planners(monkeypatch)
    exports = {}
    for planners in (0, 1, 3):
        out = tmp_path / f"p{planners}"
        dataset_export(out=out, options=EVERYTHING, workers=2, planners=planners)
        exports[planners] = _files(out)
    assert pools == [1, 3]  # the exports asked for planners did fork them
    inline = exports[0]
    assert sum(name.startswith("webdataset/train/frames-") for name in inline) > 2
    assert any(name.startswith("webdataset/heldout/") for name in inline)
    for planners in (1, 3):
        assert exports[planners].keys() == inline.keys()
        differ = [name for name in inline if exports[planners][name] != inline[name]]
        assert differ == [], f"{planners} planners changed {differ}"


def test_inside_a_transaction_the_export_plans_in_its_own_process(
    simulated: Simulated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest-django's ``db`` wraps the test in a transaction: forked planners, with their own
    # connections, would not see the simulated rows.
    pools = _count_planners(monkeypatch)
    manifest = dataset_export(out=tmp_path / "ds", options=ExportOptions(), planners=3)
    assert pools == []
    assert manifest["counts"]["frames"] == len(simulated.expected)


@pytest.mark.django_db(transaction=True)
def test_a_planner_that_finds_bad_data_fails_the_export_with_it(
    simulated: Simulated, tmp_path: Path
) -> None:
    story, index = max(simulated.expected).split("_")
    Frame.objects.filter(story_id=int(story[1:]), index=int(index[1:])).update(image_sha256="")
    with pytest.raises(ExportError, match=f"frame {max(simulated.expected)} has no stored sha256"):
        dataset_export(out=tmp_path / "ds", options=ExportOptions(), workers=2, planners=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]  # nothing half-written


@pytest.mark.django_db(transaction=True)
def test_a_killed_planner_fails_the_export(
    simulated: Simulated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_chunk = planning.Selection.chunk
    first = planning.story_chunks(False, 2 * planning.AHEAD)[0]

    def die_after_the_first_range(self: Any, stories: tuple[int, int]) -> Any:
        if stories != first:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_chunk(self, stories)

    monkeypatch.setattr(planning.Selection, "chunk", die_after_the_first_range)
    with pytest.raises(RuntimeError, match=r"export planner process \d died \(exit code -9\)"):
        dataset_export(out=tmp_path / "ds", options=ExportOptions(), workers=2, planners=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]


def test_bad_planner_count_is_refused(simulated: Simulated, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="planners must be 0 or more"):
        dataset_export(out=tmp_path / "ds", options=ExportOptions(), planners=-1)
    assert not (tmp_path / "ds").exists()


def test_a_plot_that_fails_fails_the_card(tmp_path: Path) -> None:
    drawn = tmp_path / "drawn"

    def fine() -> None:
        drawn.write_text("yes")

    def broken() -> None:
        raise ValueError("no such colormap")

    meanwhile: list[str] = []
    with pytest.raises(RuntimeError, match=r"plots \[1\] failed"):
        card._draw_all([fine, broken], lambda: meanwhile.append("shards finished"))
    assert drawn.read_text() == "yes"  # drawn in a child, written where the parent sees it
    assert meanwhile == ["shards finished"]
