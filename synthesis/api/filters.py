"""Query filters of the list endpoints (django-filter)."""

from __future__ import annotations

from django.db.models import QuerySet
from django_filters import rest_framework as filters

from synthesis.export.jobs import export_latest_splits
from synthesis.models import Character, Frame, Story
from synthesis.states import CharacterStatus, FrameStatus, StoryStatus


class CharacterFilter(filters.FilterSet):
    cid = filters.CharFilter()
    status = filters.ChoiceFilter(choices=CharacterStatus.choices)
    subject_category = filters.CharFilter()
    profession_category = filters.CharFilter()
    updated_since = filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Character
        fields = ["cid", "status", "subject_category", "profession_category"]


class StoryFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=StoryStatus.choices)
    genre = filters.CharFilter()
    character = filters.CharFilter(
        field_name="characters__cid", label="CID of a character in the cast", distinct=True
    )
    updated_since = filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Story
        fields = ["status", "genre"]


class FrameFilter(filters.FilterSet):
    story = filters.NumberFilter(field_name="story_id")
    status = filters.ChoiceFilter(choices=FrameStatus.choices)
    character = filters.CharFilter(
        field_name="cast__character__cid", label="CID of a character in the frame", distinct=True
    )
    pose = filters.CharFilter(field_name="cast__pid", label="pose ID (PID)", distinct=True)
    expression = filters.CharFilter(
        field_name="cast__eid", label="expression ID (EID)", distinct=True
    )
    composition = filters.CharFilter(
        field_name="cast__ctag", label="composition tag (CTAG)", distinct=True
    )
    split = filters.ChoiceFilter(
        choices=[("train", "train"), ("heldout", "heldout")],
        method="filter_split",
        label="split in the latest finished export",
    )
    updated_since = filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Frame
        fields = ["story", "status"]

    def filter_split(self, queryset: QuerySet[Frame], name: str, value: str) -> QuerySet[Frame]:
        stories = [sid for sid, split in export_latest_splits().items() if split == value]
        return queryset.filter(story_id__in=stories)
