"""Read-only viewsets over characters, stories and frames; thin over the selectors.

Admins and experts read every row; consumers read approved data only: locked characters,
approved or complete stories, and the frames that an export would let leave.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet
from rest_framework import viewsets

from hilapp.roles import IsConsumerOrAbove
from synthesis.api.common import ID_PATTERN, IdCursorPagination, sees_everything
from synthesis.api.filters import CharacterFilter, FrameFilter, StoryFilter
from synthesis.api.serializers import CharacterSerializer, FrameSerializer, StorySerializer
from synthesis.export.jobs import export_latest_splits
from synthesis.export.selection import exportable_frames
from synthesis.models import Character, Frame, FrameCharacter, Story, StoryCast
from synthesis.states import CharacterStatus, FrameStatus, StoryStatus

CONSUMER_STORY_STATUSES = (StoryStatus.APPROVED, StoryStatus.COMPLETE)


class CharacterViewSet(viewsets.ReadOnlyModelViewSet[Character]):
    """Character identity templates (CIDs); consumers see locked ones only."""

    serializer_class = CharacterSerializer
    permission_classes = [IsConsumerOrAbove]
    pagination_class = IdCursorPagination
    filterset_class = CharacterFilter
    lookup_value_regex = ID_PATTERN

    def get_queryset(self) -> QuerySet[Character]:
        queryset = Character.objects.all()
        if not sees_everything(self.request.user):
            queryset = queryset.filter(status=CharacterStatus.LOCKED)
        return queryset.order_by("id")


class StoryViewSet(viewsets.ReadOnlyModelViewSet[Story]):
    """Stories with their cast (CIDs); consumers see approved and complete ones."""

    serializer_class = StorySerializer
    permission_classes = [IsConsumerOrAbove]
    pagination_class = IdCursorPagination
    filterset_class = StoryFilter
    lookup_value_regex = ID_PATTERN

    def get_queryset(self) -> QuerySet[Story]:
        queryset = Story.objects.all()
        if not sees_everything(self.request.user):
            queryset = queryset.filter(status__in=CONSUMER_STORY_STATUSES)
        return (
            queryset.annotate(
                frames_approved=Count("frames", filter=Q(frames__status=FrameStatus.APPROVED))
            )
            .prefetch_related(
                Prefetch("cast", queryset=StoryCast.objects.select_related("character"))
            )
            .order_by("id")
        )


class FrameViewSet(viewsets.ReadOnlyModelViewSet[Frame]):
    """Frames with their characters' control signals and an image URL; consumers see only the
    frames an export would include (approved, not withheld by an audit, locked characters)."""

    serializer_class = FrameSerializer
    permission_classes = [IsConsumerOrAbove]
    pagination_class = IdCursorPagination
    filterset_class = FrameFilter
    lookup_value_regex = ID_PATTERN

    def get_queryset(self) -> QuerySet[Frame]:
        if sees_everything(self.request.user):
            queryset = Frame.objects.all()
        else:
            queryset = Frame.objects.filter(
                pk__in=exportable_frames(include_partial=True).values("pk")
            )
        return queryset.prefetch_related(
            Prefetch("cast", queryset=FrameCharacter.objects.select_related("character"))
        ).order_by("id")

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "splits": export_latest_splits()}
