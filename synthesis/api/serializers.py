"""API shapes: metadata and absolute image URLs, never image bytes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from synthesis.api.common import absolute_url
from synthesis.export.options import FORMATS
from synthesis.models import Character, ExportJob, Frame, FrameCharacter, Story


class CharacterSerializer(serializers.ModelSerializer[Character]):
    template_url = serializers.SerializerMethodField()

    class Meta:
        model = Character
        fields = [
            "id",
            "cid",
            "status",
            "name",
            "subject_category",
            "subject_type",
            "profession_category",
            "profession",
            "visual_description",
            "personality",
            "palette",
            "template_url",
            "viescore_sc",
            "viescore_pq",
            "viescore_overall",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_template_url(self, obj: Character) -> str | None:
        return absolute_url(self.context, obj.template)


class StorySerializer(serializers.ModelSerializer[Story]):
    cast = serializers.SerializerMethodField()
    frames_approved = serializers.IntegerField(read_only=True)

    class Meta:
        model = Story
        fields = [
            "id",
            "batch",
            "index",
            "status",
            "genre",
            "title",
            "script",
            "cast",
            "frames_approved",
            "completed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_cast(self, obj: Story) -> list[str]:
        return [entry.character.cid for entry in obj.cast.all()]


class FrameCharacterSerializer(serializers.ModelSerializer[FrameCharacter]):
    cid = serializers.CharField(source="character.cid", read_only=True)

    class Meta:
        model = FrameCharacter
        fields = ["cid", "slot", "pid", "eid", "ctag"]
        read_only_fields = fields


class FrameSerializer(serializers.ModelSerializer[Frame]):
    characters = FrameCharacterSerializer(source="cast", many=True, read_only=True)
    image_url = serializers.SerializerMethodField()
    split = serializers.SerializerMethodField()

    class Meta:
        model = Frame
        fields = [
            "id",
            "story",
            "index",
            "frame_text",
            "status",
            "approval_path",
            "audit",
            "image_url",
            "image_sha256",
            "characters",
            "synthesizer_model",
            "arbitrator_model",
            "split",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_image_url(self, obj: Frame) -> str | None:
        return absolute_url(self.context, obj.image)

    @extend_schema_field(serializers.ChoiceField(choices=["train", "heldout"], allow_null=True))
    def get_split(self, obj: Frame) -> str | None:
        splits: dict[int, str] = self.context.get("splits") or {}
        return splits.get(obj.story_id)


class ExportJobSerializer(serializers.ModelSerializer[ExportJob]):
    progress = serializers.SerializerMethodField()
    manifest_url = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)

    class Meta:
        model = ExportJob
        fields = [
            "id",
            "status",
            "params",
            "done",
            "total",
            "progress",
            "manifest",
            "manifest_url",
            "error",
            "created_by",
            "created_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.FLOAT)
    def get_progress(self, obj: ExportJob) -> float:
        return round(obj.done / obj.total, 4) if obj.total else 0.0

    @extend_schema_field(OpenApiTypes.URI)
    def get_manifest_url(self, obj: ExportJob) -> str | None:
        if obj.status != "done":
            return None
        return reverse("export-manifest", args=[obj.pk], request=self.context.get("request"))


class ExportStartSerializer(serializers.Serializer[dict[str, Any]]):
    """Parameters of a new export (checked again, fully, by the export service)."""

    formats = serializers.ListField(
        child=serializers.ChoiceField(choices=list(FORMATS)), required=False
    )
    holdout_characters = serializers.IntegerField(min_value=0, required=False)
    holdout_stories = serializers.IntegerField(min_value=0, required=False)
    shard_max_bytes = serializers.IntegerField(min_value=1, required=False)
    include_partial_stories = serializers.BooleanField(required=False)
    seed = serializers.IntegerField(min_value=0, required=False)
