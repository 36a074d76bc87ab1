"""The exported dataset, read back the way consumers read it."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from synthesis.export.options import ExportOptions
from synthesis.export.service import dataset_export
from tests.export.conftest import Simulated

OPTIONS = ExportOptions(holdout_characters=4, holdout_stories=4, seed=7)


@pytest.fixture
def exported(simulated: Simulated, tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "dataset"
    manifest = dataset_export(out=out, options=OPTIONS)
    return out, manifest


def frame_shards(out: Path, split: str) -> list[str]:
    return sorted(str(p) for p in (out / "webdataset" / split).glob("frames-*.tar"))


def expected_keys(simulated: Simulated, manifest: dict) -> set[str]:
    excluded = manifest["splits"]["story_ids"]["excluded"]
    assert manifest["counts"]["stories_excluded"] == len(excluded)
    return simulated.expected_without(excluded)


def test_every_approved_frame_leaves_once_without_a_split(
    simulated: Simulated, tmp_path: Path
) -> None:
    out = tmp_path / "all"
    manifest = dataset_export(out=out, options=ExportOptions(formats=("webdataset",)))
    keys = [s["__key__"] for s in wds.WebDataset(frame_shards(out, "train"), shardshuffle=False)]
    assert len(keys) == len(set(keys)) == manifest["counts"]["frames"]
    assert set(keys) == simulated.expected
    assert not (out / "webdataset" / "heldout").exists()


def test_webdataset_library_reads_every_approved_frame_once(
    exported: tuple[Path, dict], simulated: Simulated
) -> None:
    out, manifest = exported
    keys: list[str] = []
    member_sets = set()
    for split in ("train", "heldout"):
        for sample in wds.WebDataset(frame_shards(out, split), shardshuffle=False):
            member_sets.add(tuple(sorted(k for k in sample if not k.startswith("__"))))
            meta = json.loads(sample["json"])
            assert meta["key"] == sample["__key__"]
            assert meta["split"] == split
            assert sample["txt"].decode() == meta["text"]
            assert hashlib.sha256(sample["png"]).hexdigest() == meta["image_sha256"]
            Image.open(io.BytesIO(sample["png"])).verify()
            assert meta["approval_path"] in ("gate", "hv3_upload", "hv3_edit")
            assert meta["characters"] and all(c["cid"] for c in meta["characters"])
            keys.append(sample["__key__"])
    assert member_sets == {("json", "png", "txt")}
    assert len(keys) == len(set(keys))
    assert set(keys) == expected_keys(simulated, manifest)
    assert not set(keys) & (simulated.never | simulated.partial)


def test_datasets_library_loads_the_shards(
    exported: tuple[Path, dict], tmp_path: Path, simulated: Simulated
) -> None:
    from datasets import load_dataset

    out, manifest = exported
    train = load_dataset(
        "webdataset",
        data_files={"train": frame_shards(out, "train")},
        split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )
    heldout = load_dataset(
        "webdataset",
        data_files={"train": frame_shards(out, "heldout")},
        split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )
    keys = list(train["__key__"]) + list(heldout["__key__"])
    assert sorted(keys) == sorted(expected_keys(simulated, manifest))
    assert len(train) == manifest["counts"]["frames_train"]
    row = train[0]
    assert row["png"].size == (24, 24)  # decoded to a PIL image
    assert row["json"]["split"] == "train"


def test_parquet_index_has_a_row_per_frame(
    exported: tuple[Path, dict], simulated: Simulated
) -> None:
    out, manifest = exported
    table = pq.read_table(out / "index.parquet")
    rows = table.to_pylist()
    assert sorted(r["key"] for r in rows) == sorted(expected_keys(simulated, manifest))
    for row in rows:
        assert (out / row["shard"]).is_file()
        assert (out / row["omnigen2_image"]).is_file()
        assert row["character_count"] == len(row["characters"]) == len(row["cids"])
    assert sum(r["split"] == "heldout" for r in rows) == manifest["counts"]["frames_heldout"]


def test_manifest_checksums_verify(exported: tuple[Path, dict]) -> None:
    out, manifest = exported
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        data = (out / name).read_bytes()
        assert len(data) == entry["bytes"], name
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_heldout_split_shares_no_character_with_training(exported: tuple[Path, dict]) -> None:
    out, manifest = exported
    seen: dict[str, set[str]] = {"train": set(), "heldout": set()}
    for split in seen:
        for sample in wds.WebDataset(frame_shards(out, split), shardshuffle=False):
            seen[split] |= {c["cid"] for c in json.loads(sample["json"])["characters"]}
    heldout_cids = set(manifest["splits"]["heldout_cids"])
    assert len(heldout_cids) == 4
    assert manifest["counts"]["stories_heldout"] == 4
    assert seen["heldout"] and seen["heldout"] <= heldout_cids
    assert not seen["train"] & heldout_cids
    # The CID template shards follow the same line.
    for split in seen:
        shards = sorted(str(p) for p in (out / "webdataset" / split).glob("characters-*.tar"))
        cids = {s["__key__"] for s in wds.WebDataset(shards, shardshuffle=False)}
        assert cids == seen[split]


def test_omnigen2_jsonl_points_at_images_on_disk(
    exported: tuple[Path, dict], simulated: Simulated
) -> None:
    out, manifest = exported
    lines = []
    for split in ("train", "heldout"):
        lines += [
            json.loads(x) for x in (out / "omnigen2" / f"{split}.jsonl").read_text().splitlines()
        ]
    assert len(lines) == len(expected_keys(simulated, manifest))
    for line in lines:
        assert line["task_type"] == "ic" and line["instruction"]
        assert (out / "omnigen2" / line["output_image"]).is_file()
        assert line["input_images"]
        assert all((out / "omnigen2" / p).is_file() for p in line["input_images"])


def test_dataset_card_has_statistics_and_plots(exported: tuple[Path, dict]) -> None:
    out, manifest = exported
    card = (out / "README.md").read_text()
    for plot in (
        "characters_per_frame",
        "frames_per_story",
        "subject_x_profession",
        "pose_frequencies",
        "expression_frequencies",
        "composition_frequencies",
    ):
        assert f"card/{plot}.png" in card
        Image.open(out / "card" / f"{plot}.png").verify()
    per_frame = manifest["statistics"]["characters_per_frame"]
    assert set(per_frame) == {"1", "2"}
    assert sum(per_frame.values()) == manifest["counts"]["frames"]


def test_reexport_is_byte_identical(simulated: Simulated, tmp_path: Path) -> None:
    first = dataset_export(out=tmp_path / "a", options=OPTIONS)
    second = dataset_export(out=tmp_path / "b", options=OPTIONS)
    assert first == second
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(files) > 10
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_partial_stories_only_when_asked(simulated: Simulated, tmp_path: Path) -> None:
    dataset_export(
        out=tmp_path / "p",
        options=ExportOptions(include_partial_stories=True, formats=("parquet",)),
    )
    keys = set(pq.read_table(tmp_path / "p" / "index.parquet").column("key").to_pylist())
    assert keys == simulated.expected | simulated.partial


def test_shards_stay_under_the_size_limit(simulated: Simulated, tmp_path: Path) -> None:
    limit = 20480
    manifest = dataset_export(
        out=tmp_path / "s", options=ExportOptions(formats=("webdataset",), shard_max_bytes=limit)
    )
    shards = sorted((tmp_path / "s" / "webdataset" / "train").glob("frames-*.tar"))
    assert len(shards) > 2
    assert all(p.stat().st_size <= limit for p in shards)
    total = sum(1 for _ in wds.WebDataset([str(p) for p in shards], shardshuffle=False))
    assert total == manifest["counts"]["frames"]
