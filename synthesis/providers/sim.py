"""The offline simulator: a seeded, deterministic stand-in for every model role.

It draws real PNGs (``sim_drawing``), injects every failure the gates must catch at configured
rates, and records what it injected in the PNG's metadata so that its judge "sees" the faults —
with configurable judge error rates, so that every gate branch can be driven and tested.

Configuration: ``HILAPP_SIM_FAULTS="kind=rate,…"`` and ``HILAPP_SIM_LATENCY_MS`` in the
environment; per batch, ``params["sim"] = {"faults": {kind: rate}, "latency_ms": …}``.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from pydantic import BaseModel

from hilapp.imaging import png_metadata, to_png
from synthesis.providers.base import (
    ErrorKind,
    ImageModel,
    ImageRequest,
    ImageResult,
    ProviderError,
    Role,
    TextModel,
    TextRequest,
    TextResult,
    Usage,
    parse_json_output,
)
from synthesis.providers.sim_drawing import Figure, draw_frame, draw_reference, draw_template
from synthesis.schemas import (
    AptAnswer,
    CharacterConcept,
    CheckResult,
    ErrorScope,
    IqccReport,
    ScoreAnswer,
    ScriptCharacter,
    ScriptFrame,
    StoryScript,
    Verdict,
)
from synthesis.vocabulary import load_vocabulary

# Every failure kind, and what it does.
FAULTS: dict[str, str] = {
    "transient_error": "any call fails with a transient 503 (retried with back-off)",
    "malformed_output": "a text answer is not valid JSON for its schema",
    "low_viescore": "a template or reference comes out poor; the judge scores it low",
    "identity_drift": "frame: a character drawn with another identity (global)",
    "missing_character": "frame: a character left out (global)",
    "wrong_composition": "frame: laid out as another composition (global)",
    "wrong_pose": "frame: a character in the wrong pose (local)",
    "wrong_expression": "frame: a character with the wrong expression (local)",
    "color_fault": "frame: a small wrong-colour patch (local)",
    "object_fault": "frame: a stray object (local)",
    "invalid_script": "a story script breaks a validation rule",
    "lie_failure": "local image editing does not fix the fault",
    "judge_false_accept": "the judge passes a faulty image",
    "judge_false_reject": "the judge fails a clean image",
}
GLOBAL_FRAME_FAULTS = ("identity_drift", "missing_character", "wrong_composition")
LOCAL_FRAME_FAULTS = ("wrong_pose", "wrong_expression", "color_fault", "object_fault")
REFERENCE_FAULTS = ("low_quality", "wrong_pose", "wrong_expression")
SC_FAULTS = frozenset(GLOBAL_FRAME_FAULTS + LOCAL_FRAME_FAULTS)
META_KEY = "hilapp-sim"

# What `make run` and an unconfigured install show: every branch, now and then.
DEMO_RATES: dict[str, float] = {
    "transient_error": 0.02,
    "malformed_output": 0.02,
    "low_viescore": 0.25,
    "identity_drift": 0.06,
    "missing_character": 0.03,
    "wrong_composition": 0.03,
    "wrong_pose": 0.06,
    "wrong_expression": 0.05,
    "color_fault": 0.03,
    "object_fault": 0.02,
    "invalid_script": 0.2,
    "lie_failure": 0.3,
    "judge_false_accept": 0.0,
    "judge_false_reject": 0.0,
}


class SimConfigError(ValueError):
    pass


def parse_fault_spec(spec: str) -> dict[str, float]:
    """``"low_viescore=0.3,wrong_pose=0.1"`` → rates; unknown kinds and bad rates are errors."""
    rates: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, value = item.partition("=")
        rates.update(validate_rates({kind.strip(): value.strip()}))
    return rates


def validate_rates(raw: Mapping[str, Any]) -> dict[str, float]:
    rates = {}
    for kind, value in raw.items():
        if kind not in FAULTS:
            raise SimConfigError(f"unknown fault kind {kind!r} (one of {sorted(FAULTS)})")
        try:
            rate = float(value)
        except (TypeError, ValueError):
            raise SimConfigError(f"fault rate {kind}={value!r} is not a number") from None
        if not 0.0 <= rate <= 1.0:
            raise SimConfigError(f"fault rate {kind}={rate} must be between 0 and 1")
        rates[kind] = rate
    return rates


@dataclass(frozen=True)
class SimConfig:
    rates: Mapping[str, float]
    latency_ms: float
    seed: int

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SimConfig:
        rates = dict(DEMO_RATES)
        if settings.HILAPP_SIM_FAULTS:
            # An explicit environment setting replaces the demo mix entirely.
            rates = dict.fromkeys(FAULTS, 0.0) | parse_fault_spec(settings.HILAPP_SIM_FAULTS)
        if "faults" in options:
            rates = dict.fromkeys(FAULTS, 0.0) | validate_rates(options["faults"])
        latency = float(options.get("latency_ms", settings.HILAPP_SIM_LATENCY_MS))
        return cls(rates=rates, latency_ms=latency, seed=int(options.get("seed", 0)))

    def rate(self, kind: str) -> float:
        return self.rates.get(kind, 0.0)


class _SimBase:
    model: str
    config: SimConfig

    def _rng(self, request: TextRequest | ImageRequest, salt: str = "") -> random.Random:
        key = "|".join(
            (
                str(self.config.seed),
                self.model,
                request.role.value,
                request.seed_key,
                str(request.try_number),
                request.prompt.name,
                salt,
            )
        )
        digest = hashlib.sha256(key.encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def _hit(self, rng: random.Random, kind: str) -> bool:
        return rng.random() < self.config.rate(kind)

    def _before(self, request: TextRequest | ImageRequest) -> None:
        if self.config.latency_ms:
            time.sleep(self.config.latency_ms / 1000)
        if self._hit(self._rng(request, "transient"), "transient_error"):
            raise ProviderError(
                "simulated 503 Service Unavailable", kind=ErrorKind.SERVER, status=503
            )


def image_faults(image: bytes) -> dict[str, Any]:
    """What the simulator injected into an image it drew ({} for other images)."""
    raw = png_metadata(image).get(META_KEY)
    return json.loads(raw) if raw else {"faults": [], "missing": []}


def _figure(data: Mapping[str, Any]) -> Figure:
    return Figure(
        cid=str(data["cid"]),
        name=str(data.get("name", "")),
        palette=tuple(data.get("palette") or ("#888888", "#cccccc")),
        category=str(data.get("category", "")),
        pose_id=data.get("pose_id"),
        expression_id=data.get("expression_id"),
    )


# --- text ----------------------------------------------------------------------------------------

_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "to", "shi", "bel", "zu", "no", "ar", "quin", "de")


class SimTextModel(_SimBase, TextModel):
    provider = "sim"

    def __init__(self, model: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(model, options)
        self.config = SimConfig.from_options(self.options)

    def complete_json(self, request: TextRequest) -> TextResult:
        self._before(request)
        rng = self._rng(request)
        if self._hit(self._rng(request, "malformed"), "malformed_output"):
            raw = "Sure! Here is my assessment: the result looks mostly fine overall."
        else:
            raw = self._answer(request, rng).model_dump_json()
        usage = Usage(
            tokens_in=len(request.prompt.text) // 4 + 258 * len(request.images),
            tokens_out=len(raw) // 4,
            images_in=len(request.images),
        )
        data = parse_json_output(raw, request.schema)
        return TextResult(data=data, raw=raw, usage=usage)

    def _answer(self, request: TextRequest, rng: random.Random) -> BaseModel:
        schema = request.schema
        if schema is CharacterConcept:
            return self._concept(request.subject, rng)
        if schema is ScoreAnswer:
            return self._score(request, rng)
        if schema is AptAnswer:
            return self._apt(request)
        if schema is StoryScript:
            return self._script(request, rng)
        if schema is IqccReport:
            return self._iqcc(request, rng)
        raise ProviderError(
            f"the simulator cannot answer {schema.__name__}", kind=ErrorKind.BAD_REQUEST
        )

    def _concept(self, subject: Mapping[str, Any], rng: random.Random) -> CharacterConcept:
        name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
        palette = [
            "#{:02x}{:02x}{:02x}".format(*(rng.randint(30, 225) for _ in range(3)))
            for _ in range(3)
        ]
        kind = subject.get("subject_type", "creature")
        job = subject.get("profession", "wanderer")
        trait = rng.choice(("round-faced", "lanky", "stocky", "graceful", "tiny", "tall"))
        outfit = rng.choice(("a long coat", "a patched tunic", "a uniform", "robes", "overalls"))
        return CharacterConcept(
            name=name,
            visual_description=(
                f"A {trait} {kind} who works as a {job}, wearing {outfit} in {palette[0]} "
                f"with {palette[1]} trim and {palette[2]} accents; full body, stylized."
            ),
            personality=rng.choice(("curious", "stern", "cheerful", "shy", "bold")),
            palette=palette,
        )

    def _judged_faults(self, request: TextRequest, rng: random.Random) -> set[str]:
        """The faults the judge reports: the injected ones, bent by the judge error rates.

        The judged image is the last one (VIEScore-edit: source, then result), except for IQCC,
        whose prompt sends the frame first and its references after it.
        """
        judged = 0 if request.schema is IqccReport else -1
        faults = set(image_faults(request.images[judged])["faults"]) if request.images else set()
        if faults and self._hit(rng, "judge_false_accept"):
            return set()
        if not faults and self._hit(rng, "judge_false_reject"):
            return {"low_quality"} if "_pq" in request.prompt.name else {"wrong_pose"}
        return faults

    def _score(self, request: TextRequest, rng: random.Random) -> ScoreAnswer:
        faults = self._judged_faults(request, rng)
        perceptual = request.prompt.name.endswith("_pq")
        relevant = {"low_quality"} if perceptual else SC_FAULTS
        bad = faults & relevant
        high = lambda: round(rng.uniform(7.6, 9.8), 1)  # noqa: E731
        # Low enough that sqrt(min SC * min PQ) stays below 7 even beside a perfect other score.
        low = lambda: round(rng.uniform(2.0, 4.8), 1)  # noqa: E731
        scores = [low() if bad and i == 0 else high() for i in range(2 if perceptual else 1)]
        if request.prompt.name == "viescore_edit_sc":
            scores = [low() if bad else high(), high()]
        reasoning = (
            f"Problems seen: {', '.join(sorted(bad))}." if bad else "Matches the request well."
        )
        return ScoreAnswer(score=scores, reasoning=reasoning)

    def _apt(self, request: TextRequest) -> AptAnswer:
        faults = image_faults(request.images[-1])["faults"] if request.images else []
        original = str(request.subject.get("original_prompt", ""))
        issues = ", ".join(faults) or "low overall quality"
        return AptAnswer(
            diagnostic=f"The previous output failed the gate because of: {issues}.",
            rewritten_prompt=(
                f"{original.strip()}\n(IMPORTANT: avoid {issues}; keep the character's identity "
                "exactly; clean lines, no artifacts.)"
            ),
        )

    def _script(self, request: TextRequest, rng: random.Random) -> StoryScript:
        subject = request.subject
        cids = list(subject["cids"])
        low, high = int(subject["min_frames"]), int(subject["max_frames"])
        vocab = load_vocabulary()
        poses, exprs, comps = (list(vocab.poses), list(vocab.expressions), list(vocab.compositions))
        # Most stories run 6-9 frames in the paper: favour the low end of the range.
        count = min(high, low + int(rng.expovariate(0.5)))
        frames = []
        for i in range(count):
            cast = {cids[i % len(cids)]} | {c for c in cids if rng.random() < 0.4}
            ctag = rng.choice(comps)
            frames.append(
                ScriptFrame(
                    frame_text=f"Frame {i + 1}: {rng.choice(_BEATS)}",
                    characters=[
                        ScriptCharacter(
                            cid=c, pid=rng.choice(poses), eid=rng.choice(exprs), ctag=ctag
                        )
                        for c in cids
                        if c in cast
                    ],
                )
            )
        script = StoryScript(title=f"The {rng.choice(_TITLES)}", frames=frames)
        if self._hit(self._rng(request, "invalid"), "invalid_script"):
            _break_script(script, rng, low=low, high=high)
        return script

    def _iqcc(self, request: TextRequest, rng: random.Random) -> IqccReport:
        faults = self._judged_faults(request, rng)
        global_faults = sorted(faults & set(GLOBAL_FRAME_FAULTS))
        local_faults = sorted(faults & set(LOCAL_FRAME_FAULTS))
        identity = [f for f in global_faults if f == "identity_drift"]
        semantic = [f for f in global_faults if f != "identity_drift"]

        def check(reasons: list[str]) -> CheckResult:
            return CheckResult(verdict=Verdict.FAIL if reasons else Verdict.PASS, reasons=reasons)

        scope = (
            ErrorScope.GLOBAL
            if global_faults
            else ErrorScope.LOCAL
            if local_faults
            else ErrorScope.NONE
        )
        instruction = ""
        if scope == ErrorScope.LOCAL:
            instruction = "; ".join(_LOCAL_FIXES[f] for f in local_faults)
        return IqccReport(
            identity_consistency=check(identity),
            control_accuracy=check([f for f in local_faults if f.startswith("wrong_")]),
            semantic_alignment=check(semantic + [f for f in local_faults if "_fault" in f]),
            error_scope=scope,
            edit_instruction=instruction,
        )


_BEATS = (
    "the friends meet at the market square at dawn",
    "a storm rolls in over the hills",
    "they argue about the map",
    "a hidden door opens in the library",
    "the chase through the narrow streets begins",
    "they share a quiet meal by the fire",
    "an old rival appears at the gate",
    "the plan goes wrong at the last moment",
    "they celebrate under the lanterns",
)
_TITLES = ("Lantern Festival", "Lost Map", "Silent Tower", "Long Winter", "Clockwork Garden")
_LOCAL_FIXES = {
    "wrong_pose": "Change only the pose of the marked character to the requested pose",
    "wrong_expression": "Change only the facial expression to the requested expression",
    "color_fault": "Repaint the wrong-coloured patch on the character's outfit in its palette",
    "object_fault": "Remove the stray object next to the characters",
}


def _break_script(script: StoryScript, rng: random.Random, *, low: int, high: int) -> None:
    """Make the script break exactly one validation rule (the validator must catch it)."""
    frame = rng.choice(script.frames)
    rule = rng.choice(("unknown_cid", "unknown_pose", "duplicate", "frame_count", "unknown_ctag"))
    first = frame.characters[0]
    if rule == "unknown_cid":
        first.cid = "C-not-in-story"
    elif rule == "unknown_pose":
        first.pid = "pose.moonwalking"
    elif rule == "unknown_ctag":
        first.ctag = "comp.fisheye_dream"
    elif rule == "duplicate":
        frame.characters.append(first.model_copy())
    else:
        script.frames = (
            script.frames[: max(1, low - 1)]
            if rng.random() < 0.5
            else (
                script.frames + [script.frames[-1].model_copy()] * (high + 1 - len(script.frames))
            )
        )


# --- images --------------------------------------------------------------------------------------


class SimImageModel(_SimBase, ImageModel):
    provider = "sim"
    max_input_images = None

    def __init__(self, model: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(model, options)
        self.config = SimConfig.from_options(self.options)

    def generate(self, request: ImageRequest) -> ImageResult:
        self._before(request)
        rng = self._rng(request)
        size = request.size[0]
        seed = rng.getrandbits(32)
        if request.role == Role.CHARACTER_RENDERER:
            faults = ["low_quality"] if self._hit(rng, "low_viescore") else []
            image = draw_template(
                _figure(request.subject["figure"]), size=size, degraded=bool(faults), seed=seed
            )
            meta = {"faults": faults, "missing": []}
        elif request.role == Role.REFERENCE_EDITOR:
            faults = [rng.choice(REFERENCE_FAULTS)] if self._hit(rng, "low_viescore") else []
            image = draw_reference(
                _figure(request.subject["figure"]),
                size=size,
                degraded="low_quality" in faults,
                faults=faults,
                seed=seed,
            )
            meta = {"faults": faults, "missing": []}
        elif request.role == Role.FRAME_SYNTHESIZER:
            meta = self._frame_faults(request.subject, rng)
            image = self._draw_frame(request.subject, meta, size=size, seed=seed)
        else:  # local editor: fix the local faults of the input frame (or fail to)
            before = image_faults(request.images[0]) if request.images else {}
            kept = list(before.get("faults", []))
            if not self._hit(rng, "lie_failure"):
                kept = [f for f in kept if f not in LOCAL_FRAME_FAULTS]
            meta = {"faults": kept, "missing": list(before.get("missing", []))}
            image = self._draw_frame(request.subject, meta, size=size, seed=seed)
        png = to_png(image, {META_KEY: json.dumps(meta, sort_keys=True)})
        return ImageResult(image=png, usage=Usage(images_in=len(request.images), images_out=1))

    def _frame_faults(self, subject: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
        faults = [k for k in GLOBAL_FRAME_FAULTS + LOCAL_FRAME_FAULTS if self._hit(rng, k)]
        missing: list[str] = []
        if "missing_character" in faults:
            missing = [rng.choice([f["cid"] for f in subject["figures"]])]
        return {"faults": faults, "missing": missing}

    @staticmethod
    def _draw_frame(
        subject: Mapping[str, Any], meta: Mapping[str, Any], *, size: int, seed: int
    ) -> Any:
        figures: Sequence[Figure] = [_figure(f) for f in subject["figures"]]
        return draw_frame(
            figures,
            frame_text=str(subject.get("frame_text", "")),
            composition_ids=list(subject.get("composition_ids", [])),
            size=size,
            faults=list(meta["faults"]),
            seed=seed,
            missing_cids=list(meta["missing"]),
        )


TEXT_MODEL = SimTextModel
IMAGE_MODEL = SimImageModel
