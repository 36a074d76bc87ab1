"""The pipeline's data: batches, characters (CIDs), stories, frames, references, gate attempts,
the model-call ledger and the audit of every status change.

Statuses and their allowed transitions live in ``synthesis.states``; status fields are changed
only by ``synthesis.transitions.transition`` (a guarded UPDATE plus a ``StatusChange`` row).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from synthesis.states import (
    ApprovalPath,
    AttemptAction,
    AttemptKind,
    AttemptStatus,
    AuditStatus,
    BatchKind,
    BatchStatus,
    CallStatus,
    CharacterStatus,
    ExportStatus,
    FrameStatus,
    ReferenceStatus,
    StoryStatus,
)


class TimeStamped(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Leased(models.Model):
    """Work a worker holds: the reconciler re-enqueues it once ``lease_until`` has passed."""

    lease_until = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        abstract = True


class Queued(Leased):
    """A work unit: its steps are sent to a queue, and ``sent_to``/``sent_at`` say where and when
    the latest was sent. The reconciler does not send a unit again while that message may still
    be waiting in its queue (``synthesis.queue_backlog``)."""

    sent_to = models.CharField(max_length=64, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class Batch(TimeStamped):
    kind = models.CharField(max_length=16, choices=BatchKind.choices)
    status = models.CharField(
        max_length=16, choices=BatchStatus.choices, default=BatchStatus.RUNNING, db_index=True
    )
    seed = models.BigIntegerField(default=0)
    requested = models.PositiveIntegerField(help_text="units asked for (characters, stories, …)")
    # Launch parameters as given (genre, filters, frames per story, role overrides, sim faults).
    params = models.JSONField(default=dict, blank=True)
    budget_usd = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    note = models.TextField(blank=True, help_text="why it paused or stopped, for the admin")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(budget_usd__isnull=True) | Q(budget_usd__gte=0),
                name="batch_budget_not_negative",
            ),
            # What the launch rules allow (synthesis.services.launch_params), in the database
            # too: SQLite stores any number in a decimal column, and a budget beyond 12 digits
            # would break every later read of the row.
            models.CheckConstraint(
                condition=Q(budget_usd__isnull=True)
                | Q(budget_usd__gt=0, budget_usd__lte=Decimal("99999999.9999")),
                name="batch_budget_positive_and_fits",
            ),
            models.CheckConstraint(
                condition=Q(requested__gte=1, requested__lte=100_000),
                name="batch_requested_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Batch {self.pk} ({self.kind}, {self.status})"


class Character(TimeStamped, Queued):
    """A character identity template (CID): concept, template image and its VIEScore."""

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="characters")
    index = models.PositiveIntegerField(help_text="position in its batch")
    cid = models.CharField(max_length=32, unique=True)
    status = models.CharField(
        max_length=16,
        choices=CharacterStatus.choices,
        default=CharacterStatus.DRAFTING,
        db_index=True,
    )
    subject_category = models.CharField(max_length=64)
    subject_type = models.CharField(max_length=128)
    profession_category = models.CharField(max_length=64)
    profession = models.CharField(max_length=128)
    name = models.CharField(max_length=80, blank=True)
    visual_description = models.TextField(blank=True)
    personality = models.TextField(blank=True)
    palette = models.JSONField(default=list, blank=True)
    template = models.CharField(max_length=255, blank=True, help_text="storage name of the image")
    viescore_sc = models.FloatField(null=True, blank=True)
    viescore_pq = models.FloatField(null=True, blank=True)
    viescore_overall = models.FloatField(null=True, blank=True)
    planner_model = models.CharField(max_length=96, blank=True)
    renderer_model = models.CharField(max_length=96, blank=True)
    judge_model = models.CharField(max_length=96, blank=True)
    reason = models.TextField(blank=True, help_text="why its status last changed")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "index"], name="character_batch_index"),
        ]

    def __str__(self) -> str:
        return f"{self.cid} {self.name}".strip()


class Story(TimeStamped, Queued):
    """A story script over 1–5 locked characters, then its frames (Phase II and III)."""

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="stories")
    index = models.PositiveIntegerField()
    status = models.CharField(
        max_length=16, choices=StoryStatus.choices, default=StoryStatus.SCRIPTING, db_index=True
    )
    genre = models.CharField(max_length=64)
    title = models.CharField(max_length=200, blank=True)
    characters = models.ManyToManyField(Character, through="StoryCast", related_name="stories")
    script = models.JSONField(null=True, blank=True, help_text="the validated story script")
    repairs = models.PositiveSmallIntegerField(default=0)
    validation_errors = models.JSONField(default=list, blank=True)
    planner_model = models.CharField(max_length=96, blank=True)
    # The frame-synthesis run that renders it (None: Phase III started with its story batch).
    frames_batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.PROTECT, related_name="frame_stories"
    )
    reason = models.TextField(blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "stories"
        constraints = [
            models.UniqueConstraint(fields=["batch", "index"], name="story_batch_index"),
        ]

    def __str__(self) -> str:
        return f"Story {self.pk} {self.title}".strip()

    @property
    def phase3_batch(self) -> Batch:
        """The batch whose budget, overrides and status govern this story's frames."""
        return self.frames_batch or self.batch


class StoryCast(models.Model):
    story = models.ForeignKey(Story, on_delete=models.CASCADE, related_name="cast")
    character = models.ForeignKey(Character, on_delete=models.PROTECT, related_name="casts")
    order = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["story", "order"]
        constraints = [
            models.UniqueConstraint(fields=["story", "character"], name="cast_story_character"),
            models.UniqueConstraint(fields=["story", "order"], name="cast_story_order"),
        ]

    def __str__(self) -> str:
        return f"{self.story_id}#{self.order}: {self.character_id}"


class Frame(TimeStamped, Queued):
    story = models.ForeignKey(Story, on_delete=models.CASCADE, related_name="frames")
    index = models.PositiveSmallIntegerField()
    frame_text = models.TextField()
    status = models.CharField(
        max_length=16, choices=FrameStatus.choices, default=FrameStatus.REFERENCES, db_index=True
    )
    # The attempt budget restarts with each round (HV3 regeneration opens a new round).
    round = models.PositiveSmallIntegerField(default=1)
    image = models.CharField(max_length=255, blank=True, help_text="the approved image")
    image_sha256 = models.CharField(max_length=64, blank=True)
    approval_path = models.CharField(max_length=16, choices=ApprovalPath.choices, blank=True)
    audit = models.CharField(
        max_length=16,
        choices=AuditStatus.choices,
        blank=True,
        default=AuditStatus.NONE,
        db_index=True,
    )
    synthesizer_model = models.CharField(max_length=96, blank=True)
    arbitrator_model = models.CharField(max_length=96, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["story_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["story", "index"], name="frame_story_index"),
        ]

    def __str__(self) -> str:
        return f"Frame {self.story_id}/{self.index}"


class FrameCharacter(TimeStamped, Queued):
    """One character in one frame: its control signals and its reference image R_ij."""

    frame = models.ForeignKey(Frame, on_delete=models.CASCADE, related_name="cast")
    character = models.ForeignKey(Character, on_delete=models.PROTECT, related_name="appearances")
    slot = models.PositiveSmallIntegerField(help_text="order within the frame")
    pid = models.CharField("pose ID", max_length=64)
    eid = models.CharField("expression ID", max_length=64)
    ctag = models.CharField("composition tag", max_length=64)
    reference_status = models.CharField(
        max_length=16,
        choices=ReferenceStatus.choices,
        default=ReferenceStatus.PENDING,
        db_index=True,
    )
    round = models.PositiveSmallIntegerField(default=1)
    # The approved reference IMAGE's storage name (R_ij). Not to be confused with
    # ``GateAttempt.reference``, the FrameCharacter an attempt belongs to (``reference_subject``).
    reference = models.CharField(max_length=255, blank=True, help_text="approved R_ij image")
    reference_model = models.CharField(max_length=96, blank=True)
    iterations = models.PositiveSmallIntegerField(
        default=0, help_text="edit attempts until the reference passed (or gave up)"
    )

    class Meta:
        ordering = ["frame_id", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["frame", "character"], name="framechar_unique"),
            models.UniqueConstraint(fields=["frame", "slot"], name="framechar_slot"),
        ]

    def __str__(self) -> str:
        return f"Frame {self.frame_id} · {self.character_id} ({self.pid}, {self.eid}, {self.ctag})"


class GateAttempt(TimeStamped, Leased):
    """One try through a quality gate: produce an image, then judge it.

    The subject is exactly one of a character template, a reference or a frame.
    """

    kind = models.CharField(max_length=16, choices=AttemptKind.choices)
    character = models.ForeignKey(
        Character, null=True, blank=True, on_delete=models.CASCADE, related_name="attempts"
    )
    # The FrameCharacter whose reference this attempt edits (a subject, not an image; the
    # approved image is ``FrameCharacter.reference``). Read it as ``reference_subject``.
    reference = models.ForeignKey(
        FrameCharacter, null=True, blank=True, on_delete=models.CASCADE, related_name="attempts"
    )
    frame = models.ForeignKey(
        Frame, null=True, blank=True, on_delete=models.CASCADE, related_name="attempts"
    )
    number = models.PositiveSmallIntegerField(help_text="1, 2, … over the subject's life")
    round = models.PositiveSmallIntegerField(default=1)
    action = models.CharField(max_length=16, choices=AttemptAction.choices)
    status = models.CharField(
        max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.PENDING, db_index=True
    )
    prompt_name = models.CharField(max_length=64)
    prompt_version = models.CharField(max_length=16)
    prompt_text = models.TextField()
    instruction = models.TextField(blank=True, help_text="LIE / HV3 edit instruction")
    diagnostic = models.TextField(blank=True, help_text="APT diagnostic that led to this attempt")
    source_image = models.CharField(max_length=255, blank=True, help_text="image edited")
    image = models.CharField(max_length=255, blank=True)
    image_sha256 = models.CharField(max_length=64, blank=True)
    producer_model = models.CharField(max_length=96, blank=True)
    judge_model = models.CharField(max_length=96, blank=True)
    score_sc = models.FloatField(null=True, blank=True)
    score_pq = models.FloatField(null=True, blank=True)
    score_overall = models.FloatField(null=True, blank=True)
    error_scope = models.CharField(max_length=8, blank=True)
    report = models.JSONField(null=True, blank=True, help_text="judge reasoning / IQCC report")
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                name="attempt_one_subject",
                condition=(
                    Q(
                        kind="character",
                        character__isnull=False,
                        reference__isnull=True,
                        frame__isnull=True,
                    )
                    | Q(
                        kind="reference",
                        character__isnull=True,
                        reference__isnull=False,
                        frame__isnull=True,
                    )
                    | Q(
                        kind="frame",
                        character__isnull=True,
                        reference__isnull=True,
                        frame__isnull=False,
                    )
                ),
            ),
            models.UniqueConstraint(
                fields=["character", "number"],
                condition=Q(kind="character"),
                name="attempt_character_number",
            ),
            models.UniqueConstraint(
                fields=["reference", "number"],
                condition=Q(kind="reference"),
                name="attempt_reference_number",
            ),
            models.UniqueConstraint(
                fields=["frame", "number"],
                condition=Q(kind="frame"),
                name="attempt_frame_number",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} attempt {self.number} ({self.status})"

    @property
    def reference_subject(self) -> FrameCharacter | None:
        """The FrameCharacter this attempt belongs to (for reference attempts)."""
        return self.reference


class ModelCall(models.Model):
    """The ledger: one row per request sent to a model (each retry is its own row)."""

    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    attempt = models.ForeignKey(
        GateAttempt, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    subject = models.CharField(max_length=64, blank=True, help_text="e.g. character:12")
    role = models.CharField(max_length=32, db_index=True)
    provider = models.CharField(max_length=32, db_index=True)
    model = models.CharField(max_length=96)
    prompt_name = models.CharField(max_length=64, blank=True)
    prompt_version = models.CharField(max_length=16, blank=True)
    seed_key = models.CharField(max_length=128, blank=True)
    try_number = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=CallStatus.choices, default=CallStatus.STARTED, db_index=True
    )
    inputs = models.JSONField(default=dict, blank=True, help_text="prompt text, image hashes")
    output = models.JSONField(default=dict, blank=True, help_text="raw answer or image hash")
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    images_in = models.PositiveSmallIntegerField(default=0)
    images_out = models.PositiveSmallIntegerField(default=0)
    # While started: the estimate reserved against the budget; afterwards: the real cost.
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error_kind = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    # The Celery worker (node name) that sent the request; blank outside a worker.
    worker = models.CharField(max_length=128, blank=True)
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["batch", "status"], name="call_batch_status")]
        constraints = [
            models.CheckConstraint(
                condition=Q(cost_usd__gte=0, cost_usd__lte=Decimal("999999.999999")),
                name="call_cost_in_range",
            )
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.provider}:{self.model} ({self.status})"

    @property
    def model_label(self) -> str:
        return f"{self.provider}:{self.model}"


class StatusChange(models.Model):
    """Audit row of one status transition (who/what moved which object, from, to, why)."""

    model = models.CharField(max_length=32)
    object_id = models.BigIntegerField()
    old = models.CharField(max_length=16)
    new = models.CharField(max_length=16)
    reason = models.TextField(blank=True)
    actor = models.CharField(max_length=64, default="system")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["model", "object_id"], name="statuschange_object")]

    def __str__(self) -> str:
        return f"{self.model}:{self.object_id} {self.old}→{self.new}"


class ExportJob(TimeStamped):
    """A dataset export: shards, Parquet index, manifest and card written under ``out_dir``."""

    status = models.CharField(
        max_length=16, choices=ExportStatus.choices, default=ExportStatus.QUEUED, db_index=True
    )
    params = models.JSONField(default=dict, blank=True)
    out_dir = models.CharField(max_length=500)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    manifest = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Export {self.pk} ({self.status})"
