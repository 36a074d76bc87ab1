"""Query filters of the list endpoints (django-filter).

Values that the database cannot hold are a 400 here, not an error in the driver: ids are
whole numbers that fit 64 bits, and ``updated_since`` is a datetime between 1900 and 9998 in
UTC (an extreme year with an offset overflows Python's datetime on the way to UTC).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from synthesis.export.jobs import export_latest_splits
from synthesis.models import Character, Frame, Story
from synthesis.states import CharacterStatus, FrameStatus, StoryStatus

EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9998, 12, 31, tzinfo=dt.UTC)
MAX_ID = 2**63 - 1
OUT_OF_RANGE = "Enter an ISO 8601 datetime between 1900 and 9998."


class BoundedIsoDateTimeField(IsoDateTimeField):
    def to_python(self, value: Any) -> dt.datetime | None:
        try:
            moment = super().to_python(value)
            utc = moment.astimezone(dt.UTC) if moment is not None else None
        except (OverflowError, ValueError):
            raise forms.ValidationError(
                "Enter an ISO 8601 datetime between 1900 and 9998."
            ) from None
        if utc is not None and not EARLIEST <= utc <= LATEST:
            raise forms.ValidationError(OUT_OF_RANGE)
        return utc


class UpdatedSinceFilter(filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField


class IdField(forms.IntegerField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)


@extend_schema_field(OpenApiTypes.INT64)
class IdFilter(filters.NumberFilter):
    """An id: a whole number that fits the column (``1e400`` or 20 digits are a 400)."""

    field_class = IdField


class CharacterFilter(filters.FilterSet):
    cid = filters.CharFilter()
    status = filters.ChoiceFilter(choices=CharacterStatus.choices)
    subject_category = filters.CharFilter()
    profession_category = filters.CharFilter()
    updated_since = UpdatedSinceFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Character
        fields = ["cid", "status", "subject_category", "profession_category"]


class StoryFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=StoryStatus.choices)
    genre = filters.CharFilter()
    character = filters.CharFilter(
        field_name="characters__cid", label="CID of a character in the cast", distinct=True
    )
    updated_since = UpdatedSinceFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Story
        fields = ["status", "genre"]


class FrameFilter(filters.FilterSet):
    story = IdFilter(field_name="story_id")
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
    updated_since = UpdatedSinceFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Frame
        fields = ["story", "status"]

    def filter_split(self, queryset: QuerySet[Frame], name: str, value: str) -> QuerySet[Frame]:
        stories = [sid for sid, split in export_latest_splits().items() if split == value]
        return queryset.filter(story_id__in=stories)
