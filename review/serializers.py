"""Review API shapes. Blind by construction: votes appear only in ``AdminItemSerializer``."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from hilapp.media import media_url
from review.models import ReviewEvent, ReviewItem, Vote
from review.stages import CHOICE_KEYS, Choice, choices_for
from review.votes import DWELL_MAX_MS


def _choices(stage: str) -> list[dict[str, str]]:
    return [
        {"value": c, "label": Choice(c).label, "key": CHOICE_KEYS[c]} for c in choices_for(stage)
    ]


class ItemSerializer(serializers.ModelSerializer[ReviewItem]):
    """What an expert sees: the item and their own vote, never anyone else's."""

    choices = serializers.SerializerMethodField()
    my_vote = serializers.SerializerMethodField()
    decided_choice = serializers.SerializerMethodField()

    class Meta:
        model = ReviewItem
        fields = [
            "id",
            "stage",
            "subject_id",
            "subject_label",
            "priority",
            "status",
            "created_at",
            "decided_choice",
            "decided_at",
            "choices",
            "my_vote",
        ]

    def get_choices(self, item: ReviewItem) -> list[dict[str, str]]:
        return _choices(item.stage)

    def get_my_vote(self, item: ReviewItem) -> str | None:
        user = self.context.get("user")
        if user is None:
            return None
        vote = Vote.objects.filter(item=item, expert=user).only("choice").first()
        return vote.choice if vote else None

    def get_decided_choice(self, item: ReviewItem) -> str | None:
        return item.decided_choice or None


class VoteSerializer(serializers.ModelSerializer[Vote]):
    expert = serializers.CharField(source="expert.get_username")
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = Vote
        fields = [
            "id",
            "expert",
            "choice",
            "comment",
            "image_url",
            "instruction",
            "dwell_ms",
            "guideline_version",
            "revisions",
            "revised_at",
            "created_at",
        ]

    def get_image_url(self, vote: Vote) -> str | None:
        return media_url(vote.image_name) or None


class EventSerializer(serializers.ModelSerializer[ReviewEvent]):
    expert = serializers.SerializerMethodField()

    class Meta:
        model = ReviewEvent
        fields = ["id", "kind", "expert", "choice", "comment", "data", "created_at"]

    def get_expert(self, event: ReviewEvent) -> str | None:
        return event.expert.get_username() if event.expert else None


class AdminItemSerializer(ItemSerializer):
    """Admins see everything, including the votes of open items."""

    votes = serializers.SerializerMethodField()
    events = serializers.SerializerMethodField()

    class Meta(ItemSerializer.Meta):
        fields = [*ItemSerializer.Meta.fields, "votes_count", "leases_active", "votes", "events"]

    def get_votes(self, item: ReviewItem) -> list[dict[str, Any]]:
        votes = item.votes.select_related("expert").order_by("pk")
        return list(VoteSerializer(votes, many=True).data)

    def get_events(self, item: ReviewItem) -> list[dict[str, Any]]:
        events = item.events.select_related("expert").order_by("pk")
        return list(EventSerializer(events, many=True).data)


class VoteInputSerializer(serializers.Serializer[Any]):
    choice = serializers.CharField(max_length=16)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)
    idempotency_key = serializers.CharField(max_length=80)
    instruction = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=4000
    )
    image = serializers.FileField(required=False, allow_null=True, allow_empty_file=True)
    dwell_ms = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        max_value=DWELL_MAX_MS,
        help_text="how long the item was on screen before this vote, in milliseconds",
    )
    guideline_version = serializers.RegexField(
        r"^[0-9a-f]{1,16}$",
        required=False,
        allow_blank=True,
        default="",
        help_text="the version of the stage's guidelines the expert had (GET guidelines/)",
    )


class RevisionInputSerializer(serializers.Serializer[Any]):
    """Change my vote while the item is open; ``comment`` left out keeps the old one."""

    choice = serializers.CharField(max_length=16)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    instruction = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=4000
    )
    image = serializers.FileField(required=False, allow_null=True, allow_empty_file=True)
    dwell_ms = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0, max_value=DWELL_MAX_MS
    )


class OutcomeSerializer(serializers.Serializer[Any]):
    item_id = serializers.IntegerField()
    vote_id = serializers.IntegerField()
    choice = serializers.CharField()
    decided = serializers.BooleanField()
    decision_choice = serializers.CharField(allow_null=True)
    replayed = serializers.BooleanField()
