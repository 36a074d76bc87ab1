"""``manage.py launch_batch characters|stories|frames --count N [--seed S] [--wait]``."""

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from synthesis.models import Batch
from synthesis.services.batch_lifecycle import batch_launch
from synthesis.services.launch_params import MAX_PARAMS_BYTES, LaunchError
from synthesis.services.progress import batch_counts, batch_phase_progress
from synthesis.states import BatchKind, BatchStatus


class Command(BaseCommand):
    help = "Launch a batch of characters (Phase I), stories (Phase II) or frame synthesis (III)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=[k.value for k in BatchKind])
        parser.add_argument("--count", required=True, help="how many units to make")
        parser.add_argument("--seed", default="0", help="a whole number, 0 to 2**63-1")
        parser.add_argument("--budget-usd", default=None, help="stop before spending more")
        parser.add_argument(
            "--genre", action="append", default=[], help="story genre (repeatable; stories only)"
        )
        parser.add_argument(
            "--sim-faults",
            default="",
            help='simulator fault rates, e.g. "low_viescore=0.3,wrong_pose=0.1"',
        )
        parser.add_argument("--params", default="{}", help="further parameters as JSON")
        parser.add_argument("--wait", action="store_true", help="show progress until done")
        parser.add_argument("--timeout", type=float, default=0, help="give up waiting after S")

    def handle(self, *args: Any, **options: Any) -> None:
        if len(options["params"]) > MAX_PARAMS_BYTES:
            raise CommandError(f"--params must be at most {MAX_PARAMS_BYTES} bytes")
        try:
            params = json.loads(options["params"])
        except (json.JSONDecodeError, RecursionError) as exc:
            raise CommandError(f"--params is not valid JSON: {exc}") from None
        if not isinstance(params, dict):
            raise CommandError("--params must be a JSON object")
        if options["sim_faults"]:
            from synthesis.providers.sim import SimConfigError, parse_fault_spec

            try:
                params.setdefault("sim", {})["faults"] = parse_fault_spec(options["sim_faults"])
            except SimConfigError as exc:
                raise CommandError(str(exc)) from None
        try:
            batch = self._launch(options, params)
        except LaunchError as exc:
            raise CommandError(f"{exc.field}: {exc}") from None
        self.stdout.write(f"launched batch {batch.pk}: {batch.requested} {batch.kind}")
        if options["wait"]:
            self._wait(batch, timeout=options["timeout"])

    def _launch(self, options: dict[str, Any], params: dict[str, Any]) -> Batch:
        if options["genre"]:
            params["genres"] = options["genre"]
        return batch_launch(
            kind=options["kind"],
            count=options["count"],
            seed=options["seed"],
            budget_usd=options["budget_usd"],
            params=params,
        )

    def _wait(self, batch: Batch, *, timeout: float) -> None:
        started = time.monotonic()
        with tqdm(total=batch.requested, desc=f"batch {batch.pk}", unit=batch.kind) as bar:
            while True:
                batch.refresh_from_db()
                # Waits for the machine work; units that wait for people end the wait.
                phases = batch_phase_progress(batch)
                machine = sum(p.machine for p in phases)
                bar.update(sum(p.total for p in phases) - machine - bar.n)
                if not machine or batch.status != BatchStatus.RUNNING:
                    break
                if timeout and time.monotonic() - started > timeout:
                    raise CommandError(f"batch {batch.pk} not finished after {timeout:.0f}s")
                time.sleep(0.5)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(batch_counts(batch).items()))
        self.stdout.write(f"batch {batch.pk} {batch.status}: {counts}")
        if batch.note:
            self.stdout.write(batch.note)
