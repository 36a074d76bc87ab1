"""Every status of the pipeline and the transitions allowed between them — written once.

Services change a status only through ``synthesis.transitions.transition``, which checks the
edge against these maps and writes it as a guarded UPDATE with an audit row.
"""

from __future__ import annotations

from django.db import models


class BatchKind(models.TextChoices):
    CHARACTERS = "characters", "Characters (Phase I)"
    STORIES = "stories", "Stories (Phase II)"
    FRAMES = "frames", "Frame synthesis (Phase III)"


class BatchStatus(models.TextChoices):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


class CharacterStatus(models.TextChoices):
    DRAFTING = "drafting"  # the planner writes the concept
    RENDERING = "rendering"  # render + VIEScore gate
    DISCARDED = "discarded"  # VIEScore below threshold
    PENDING_HV1 = "pending_hv1"
    LOCKED = "locked"
    REJECTED = "rejected"
    FAILED = "failed"  # a provider failed permanently
    CANCELLED = "cancelled"  # its batch was cancelled before it started


class StoryStatus(models.TextChoices):
    SCRIPTING = "scripting"
    DROPPED = "dropped"  # still invalid after the bounded repairs
    PENDING_HV2 = "pending_hv2"
    APPROVED = "approved"  # Phase III runs
    REJECTED = "rejected"
    COMPLETE = "complete"  # every frame approved or discarded
    FAILED = "failed"
    CANCELLED = "cancelled"


class FrameStatus(models.TextChoices):
    REFERENCES = "references"  # reference sub-loop for its characters
    RENDERING = "rendering"  # synthesis + IQCC gate
    APPROVED = "approved"
    HARD_FAILED = "hard_failed"  # waiting for HV3
    DISCARDED = "discarded"


class ReferenceStatus(models.TextChoices):
    PENDING = "pending"
    EDITING = "editing"  # edit + VIEScore gate with APT
    APPROVED = "approved"
    FAILED = "failed"  # never passed: hard-fails its frame


class AttemptStatus(models.TextChoices):
    PENDING = "pending"  # to be produced (render / edit)
    PRODUCED = "produced"  # image made, to be judged
    PASSED = "passed"
    FAILED = "failed"  # judged below the gate
    ERRORED = "errored"  # a provider failed permanently


class AttemptKind(models.TextChoices):
    CHARACTER = "character"
    REFERENCE = "reference"
    FRAME = "frame"


class AttemptAction(models.TextChoices):
    INITIAL = "initial"
    APT = "apt", "Auto-Prompt Tuning"
    LIE = "lie", "Local Image Editing"
    HV3_EDIT = "hv3_edit", "HV3 correction by instruction"
    HV3_REGENERATE = "hv3_regenerate", "HV3 full regeneration"


class CallStatus(models.TextChoices):
    STARTED = "started"
    OK = "ok"
    FAILED = "failed"
    ABANDONED = "abandoned"  # its worker died; the reconciler closed it


class AuditStatus(models.TextChoices):
    """The sampled expert audit of a gate-approved frame (withheld from export while pending)."""

    NONE = "", "not sampled"
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


class ExportStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ApprovalPath(models.TextChoices):
    GATE = "gate", "IQCC gate"
    HV3_UPLOAD = "hv3_upload", "HV3 manual correction (uploaded image)"
    HV3_EDIT = "hv3_edit", "HV3 correction by instruction, then the gate"


_C, _S, _F, _R, _A, _B = (
    CharacterStatus,
    StoryStatus,
    FrameStatus,
    ReferenceStatus,
    AttemptStatus,
    BatchStatus,
)

TRANSITIONS: dict[type[models.TextChoices], dict[str, frozenset[str]]] = {
    CharacterStatus: {
        _C.DRAFTING: frozenset({_C.RENDERING, _C.FAILED, _C.CANCELLED}),
        _C.RENDERING: frozenset({_C.DISCARDED, _C.PENDING_HV1, _C.FAILED}),
        _C.PENDING_HV1: frozenset({_C.LOCKED, _C.REJECTED}),
    },
    StoryStatus: {
        _S.SCRIPTING: frozenset({_S.PENDING_HV2, _S.DROPPED, _S.FAILED, _S.CANCELLED}),
        _S.PENDING_HV2: frozenset({_S.APPROVED, _S.REJECTED}),
        _S.APPROVED: frozenset({_S.COMPLETE}),
    },
    FrameStatus: {
        _F.REFERENCES: frozenset({_F.RENDERING, _F.HARD_FAILED}),
        _F.RENDERING: frozenset({_F.APPROVED, _F.HARD_FAILED}),
        _F.HARD_FAILED: frozenset({_F.REFERENCES, _F.RENDERING, _F.APPROVED, _F.DISCARDED}),
    },
    ReferenceStatus: {
        _R.PENDING: frozenset({_R.EDITING}),
        _R.EDITING: frozenset({_R.APPROVED, _R.FAILED}),
        _R.FAILED: frozenset({_R.EDITING}),  # HV3 regeneration gives it a fresh budget
    },
    AttemptStatus: {
        _A.PENDING: frozenset({_A.PRODUCED, _A.ERRORED}),
        _A.PRODUCED: frozenset({_A.PASSED, _A.FAILED, _A.ERRORED}),
    },
    ExportStatus: {
        ExportStatus.QUEUED: frozenset({ExportStatus.RUNNING, ExportStatus.FAILED}),
        # A running export whose worker died goes back to the queue (it writes to a temporary
        # folder and renames at the end, so running it again is safe).
        ExportStatus.RUNNING: frozenset(
            {ExportStatus.DONE, ExportStatus.FAILED, ExportStatus.QUEUED}
        ),
    },
    BatchStatus: {
        _B.RUNNING: frozenset({_B.PAUSED, _B.CANCELLED, _B.DONE}),
        _B.PAUSED: frozenset({_B.RUNNING, _B.CANCELLED}),
    },
}


def allowed(status_type: type[models.TextChoices], old: str, new: str) -> bool:
    return new in TRANSITIONS[status_type].get(old, frozenset())


def terminal_states(status_type: type[models.TextChoices]) -> frozenset[str]:
    edges = TRANSITIONS[status_type]
    return frozenset(s for s in status_type.values if not edges.get(s))
