"""Export the approved dataset to a folder (the same service as an API export job)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from synthesis.export.options import (
    DEFAULT_SHARD_MAX_BYTES,
    FORMATS,
    ExportError,
    options_from_params,
)
from synthesis.export.service import dataset_export


class Command(BaseCommand):
    help = (
        "Write approved frames of complete stories as WebDataset shards, a Parquet index, "
        "OmniGen2 jsonl, a manifest with checksums and a dataset card."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, type=Path, help="destination folder")
        parser.add_argument("--holdout-characters", type=int, default=0, metavar="N")
        parser.add_argument("--holdout-stories", type=int, default=0, metavar="M")
        parser.add_argument(
            "--shard-max-bytes", type=int, default=DEFAULT_SHARD_MAX_BYTES, metavar="B"
        )
        parser.add_argument("--include-partial-stories", action="store_true")
        parser.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
        parser.add_argument(
            "--format",
            default=",".join(FORMATS),
            help=f"comma-separated, of: {', '.join(FORMATS)} (default: all)",
        )
        parser.add_argument(
            "--readers",
            type=int,
            default=None,
            metavar="N",
            help="threads reading images (default: HILAPP_EXPORT_READERS). The output is the "
            "same whatever N.",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            options = options_from_params(
                {
                    "formats": opts["format"],
                    "holdout_characters": opts["holdout_characters"],
                    "holdout_stories": opts["holdout_stories"],
                    "shard_max_bytes": opts["shard_max_bytes"],
                    "include_partial_stories": opts["include_partial_stories"],
                    "seed": opts["seed"],
                }
            )
            bar = tqdm(unit="frame", disable=bool(opts["no_progress"]), file=sys.stderr)

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                manifest = dataset_export(
                    out=opts["out"],
                    options=options,
                    progress=progress,
                    readers=opts["readers"],
                )
            finally:
                bar.close()
        except ExportError as exc:
            raise CommandError(str(exc)) from exc
        counts = manifest["counts"]
        self.stdout.write(
            f"Exported {counts['frames']} frames ({counts['frames_train']} train, "
            f"{counts['frames_heldout']} held out; {counts['stories_train']} + "
            f"{counts['stories_heldout']} stories, {counts['characters_heldout']} held-out "
            f"characters) and {len(manifest['files'])} files to {opts['out']}"
        )
