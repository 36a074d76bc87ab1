"""A simulated end-to-end run of the three phases, and the figures the paper reports for them.

Runs in-process with Celery in eager mode on a fresh SQLite database under a temporary folder,
with the ``sim`` providers at their demo fault mix (or ``--faults``): Phase I makes characters
and HV1 locks every survivor; Phase II scripts ``--stories`` stories and HV2 approves every
valid script; Phase III runs, and HV3 resolves every hard failure by full regeneration (up to
``--max-regenerations`` times, then discards). Prints:

- APT: mean edit iterations among the references that failed the VIEScore gate at first (the
  paper reports 2.19 among those that then passed);
- attempts per frame (all rounds, and in the first round);
- the HV3 escalation rate (frames that hard-failed at least once; the paper: about 2%).

    .venv/bin/python benchmarks/pipeline_simulation.py
    .venv/bin/python benchmarks/pipeline_simulation.py --stories 100 --seed 7 --size 128
    .venv/bin/python benchmarks/pipeline_simulation.py --faults "low_viescore=0.3,wrong_pose=0.1"
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _setup(var_dir: str, size: int) -> None:
    os.environ["HILAPP_VAR_DIR"] = var_dir
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"
    os.environ["HILAPP_TEMPLATE_SIZE"] = str(size)
    os.environ["HILAPP_FRAME_SIZE"] = str(size)
    os.environ.setdefault("HILAPP_RETRY_BASE_S", "0")
    os.environ.setdefault("HILAPP_AUDIT_RATE", "0")
    os.environ["DJANGO_SETTINGS_MODULE"] = "hilapp.settings.base"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from hilapp.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


def _params(faults: str) -> dict[str, Any]:
    if not faults:
        return {}
    from synthesis.providers.sim import parse_fault_spec

    return {"sim": {"faults": parse_fault_spec(faults)}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from synthesis.models import Batch, Character, Frame, FrameCharacter, GateAttempt, ModelCall
    from synthesis.services.characters import batch_launch_characters, character_apply_review
    from synthesis.services.hv3 import frame_apply_hv3
    from synthesis.services.stories import batch_launch_stories, story_apply_review
    from synthesis.states import CharacterStatus, FrameStatus, StoryStatus

    started = time.monotonic()
    params = _params(args.faults)
    chars = batch_launch_characters(count=args.characters, seed=args.seed, params=params)
    for pk in chars.characters.filter(status=CharacterStatus.PENDING_HV1).values_list(
        "pk", flat=True
    ):
        character_apply_review(character_id=pk, approved=True, reason="benchmark HV1")
    locked = Character.objects.filter(status=CharacterStatus.LOCKED).count()
    batch: Batch = batch_launch_stories(
        count=args.stories,
        seed=args.seed,
        params={**params, "max_cast": min(5, locked)},
    )
    for pk in batch.stories.filter(status=StoryStatus.PENDING_HV2).values_list("pk", flat=True):
        story_apply_review(story_id=pk, approved=True, reason="benchmark HV2")
    frames = Frame.objects.filter(story__batch=batch)
    hv3_decisions: Counter[str] = Counter()
    while True:
        hard = list(frames.filter(status=FrameStatus.HARD_FAILED))
        if not hard:
            break
        for frame in hard:
            choice = "regenerate" if frame.round <= args.max_regenerations else "discard"
            frame_apply_hv3(frame_id=frame.pk, choice=choice, reason="benchmark HV3")
            hv3_decisions[choice] += 1
    elapsed = time.monotonic() - started

    refs = FrameCharacter.objects.filter(frame__story__batch=batch)
    failed_first = []
    for fc in refs:
        attempts = list(fc.attempts.filter(round=1).order_by("number"))
        if attempts and attempts[0].status == "failed":
            passed = attempts[-1].status == "passed"
            failed_first.append((len(attempts), passed))
    frame_attempts = [(f.attempts.count(), f.attempts.filter(round=1).count()) for f in frames]
    escalated = sum(1 for f in frames if f.round > 1 or f.status == FrameStatus.DISCARDED)
    hard_once = frames.filter(pk__in=_hard_failed_ids()).count()
    actions = Counter(
        GateAttempt.objects.filter(frame__story__batch=batch).values_list("action", flat=True)
    )
    calls = ModelCall.objects.filter(batch=batch)
    return {
        "seconds": round(elapsed, 1),
        "characters": chars.characters.count(),
        "locked": locked,
        "stories": dict(Counter(batch.stories.values_list("status", flat=True))),
        "script_repairs": sum(batch.stories.values_list("repairs", flat=True)),
        "frames": frames.count(),
        "frames_by_status": dict(Counter(frames.values_list("status", flat=True))),
        "approval_paths": dict(Counter(frames.values_list("approval_path", flat=True))),
        "references": refs.count(),
        "references_failed_first": len(failed_first),
        "apt_mean_iterations_failed_first_then_passed": _mean([n for n, ok in failed_first if ok]),
        "apt_mean_iterations_failed_first_all": _mean([n for n, _ in failed_first]),
        "references_never_passed_round1": sum(1 for _, ok in failed_first if not ok),
        "attempts_per_frame": _mean([a for a, _ in frame_attempts]),
        "attempts_per_frame_round1": _mean([a for _, a in frame_attempts]),
        "frame_attempt_actions": dict(actions),
        "hv3_escalation_rate": round(hard_once / max(frames.count(), 1), 4),
        "hv3_escalated_frames": hard_once,
        "hv3_decisions": dict(hv3_decisions),
        "frames_regenerated_or_discarded": escalated,
        "model_calls": calls.count(),
        "cost_usd_story_batch": float(sum(calls.values_list("cost_usd", flat=True))),
    }


def _hard_failed_ids() -> Any:
    from synthesis.models import StatusChange

    return StatusChange.objects.filter(model="frame", new="hard_failed").values("object_id")


def _mean(values: list[int]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stories", type=int, default=100)
    parser.add_argument("--characters", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--faults", default="", help="sim fault rates (default: the demo mix)")
    parser.add_argument("--max-regenerations", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hilapp-sim-") as var_dir:
        _setup(var_dir, args.size)
        figures = run(args)
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
