"""Review items, leases, votes, decisions and the audit trail.

The item row carries denormalized counters (``votes_count``) so that the queue query reads one
row per candidate; the partial index ``review_item_queue`` holds only open items, in queue order.
Invariants live in the database: one open item per (stage, subject), one vote per (item, expert),
one vote per idempotency key, one decision per item, one lease row per (item, expert).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from review.stages import Choice, Stage


class ItemStatus(models.TextChoices):
    OPEN = "open", "Open"
    DECIDED = "decided", "Decided"


class ReviewItem(models.Model):
    stage = models.CharField(max_length=8, choices=Stage.choices)
    subject_id = models.BigIntegerField()
    subject_label = models.CharField(max_length=200, blank=True, default="")
    # Higher first; among equal priorities the oldest (lowest id) first.
    priority = models.IntegerField(default=0)
    status = models.CharField(max_length=8, choices=ItemStatus.choices, default=ItemStatus.OPEN)
    votes_count = models.PositiveSmallIntegerField(default=0)
    # The leading choice's vote count: the seat rule (``stages.open_seats``) reads it from the row.
    lead_votes = models.PositiveSmallIntegerField(default=0)
    # Active leases and the earliest of their expiry times, kept in step with ReviewLease under
    # the item's row lock: the queue decides "is there a free seat" from this row alone, which
    # PostgreSQL re-checks on the newest row version when FOR UPDATE meets a concurrent change.
    leases_active = models.PositiveSmallIntegerField(default=0)
    lease_expires_min = models.DateTimeField(null=True, blank=True)
    decided_choice = models.CharField(max_length=16, choices=Choice.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stage", "subject_id"],
                condition=Q(status="open"),
                name="review_item_one_open_per_subject",
            ),
            models.CheckConstraint(
                condition=Q(status="open", decided_choice="")
                | (Q(status="decided") & ~Q(decided_choice="")),
                name="review_item_decided_has_choice",
            ),
        ]
        indexes = [
            models.Index(
                "stage",
                models.F("priority").desc(),
                "id",
                condition=Q(status="open"),
                name="review_item_queue",
            ),
            models.Index(fields=["stage", "subject_id"], name="review_item_subject"),
        ]

    def __str__(self) -> str:
        return f"{self.stage} #{self.pk} {self.subject_label or self.subject_id}"


class LeaseStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    VOTED = "voted", "Voted"
    SKIPPED = "skipped", "Skipped"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"


class ReviewLease(models.Model):
    """An expert's seat on an item: given by the queue, ended by a vote, a skip or expiry.

    One row per (item, expert): a seat taken again after a skip reuses the row; the history is
    in ``ReviewEvent``.
    """

    item = models.ForeignKey(
        ReviewItem, on_delete=models.PROTECT, related_name="leases", db_index=False
    )
    expert = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    status = models.CharField(max_length=8, choices=LeaseStatus.choices)
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "expert"], name="review_lease_one_per_expert"),
        ]
        indexes = [
            models.Index(
                fields=["item", "expires_at"],
                condition=Q(status="active"),
                name="review_lease_active_item",
            ),
            models.Index(
                fields=["expert", "expires_at"],
                condition=Q(status="active"),
                name="review_lease_active_expert",
            ),
            # The queue skips what an expert passed on recently: without this index that lookup
            # reads every lease ever given (one per look, millions over a dataset).
            models.Index(
                fields=["expert", "ended_at"],
                condition=Q(status="skipped"),
                name="review_lease_skipped_expert",
            ),
        ]

    def __str__(self) -> str:
        return f"lease {self.status} of {self.expert_id} on {self.item_id}"


class Vote(models.Model):
    item = models.ForeignKey(
        ReviewItem, on_delete=models.PROTECT, related_name="votes", db_index=False
    )
    expert = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    stage = models.CharField(max_length=8, choices=Stage.choices)
    choice = models.CharField(max_length=16, choices=Choice.choices)
    comment = models.TextField(blank=True, default="")
    idempotency_key = models.CharField(max_length=80)
    # HV3 "correct": the storage name of the uploaded corrected frame, or an edit instruction.
    image_name = models.CharField(max_length=255, blank=True, default="")
    instruction = models.TextField(blank=True, default="")
    # Time the card was on screen before this vote (ms; revisions add theirs), as the page
    # measured it or an API client sent it; null when unknown. Admin-only, like the choice.
    dwell_ms = models.PositiveIntegerField(null=True, blank=True)
    # The content hash of the stage's guidelines the expert had (``review.guidelines``).
    guideline_version = models.CharField(max_length=16, blank=True, default="")
    revisions = models.PositiveSmallIntegerField(default=0)
    revised_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "expert"], name="review_vote_one_per_expert"),
            models.UniqueConstraint(fields=["idempotency_key"], name="review_vote_idempotency"),
        ]
        indexes = [models.Index(fields=["expert", "created_at"], name="review_vote_expert_time")]

    def __str__(self) -> str:
        return f"vote {self.choice} by {self.expert_id} on {self.item_id}"


class ReviewDecision(models.Model):
    item = models.OneToOneField(ReviewItem, on_delete=models.PROTECT, related_name="decision")
    stage = models.CharField(max_length=8, choices=Stage.choices)
    subject_id = models.BigIntegerField()
    choice = models.CharField(max_length=16, choices=Choice.choices)
    deciding_vote = models.OneToOneField(Vote, on_delete=models.PROTECT, related_name="+")
    comment_summary = models.TextField(blank=True, default="")
    image_name = models.CharField(max_length=255, blank=True, default="")
    instruction = models.TextField(blank=True, default="")
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["stage", "decided_at"], name="review_decision_stage")]

    def __str__(self) -> str:
        return f"{self.stage} #{self.item_id}: {self.choice}"


class EventKind(models.TextChoices):
    OPENED = "opened", "Item opened"
    LEASE_GIVEN = "lease_given", "Lease given"
    LEASE_EXPIRED = "lease_expired", "Lease expired"
    LEASE_RELEASED = "lease_released", "Lease released"
    LEASE_SKIPPED = "lease_skipped", "Skipped"
    VOTE = "vote", "Vote"
    VOTE_REVISED = "vote_revised", "Vote revised"
    DECISION = "decision", "Decision"


class ReviewEvent(models.Model):
    """The audit trail: append-only, never updated or deleted."""

    item = models.ForeignKey(
        ReviewItem, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    expert = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    choice = models.CharField(max_length=16, blank=True, default="")
    comment = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["item", "created_at"], name="review_event_item")]

    def __str__(self) -> str:
        return f"{self.kind} on {self.item_id}"
