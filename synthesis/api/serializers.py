"""API shapes: metadata and absolute image URLs, never image bytes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from synthesis.api.common import WholeNumberField, absolute_url
from synthesis.export.downloads import published_files
from synthesis.export.options import FORMATS, MIN_SHARD_MAX_BYTES
from synthesis.models import Character, ExportJob, Frame, FrameCharacter, Story
from synthesis.states import ApprovalPath

# An absolute URL, or null when there is no file (yet): a generated client must allow both.
NULLABLE_URI = serializers.URLField(allow_null=True, read_only=True)


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

    @extend_schema_field(NULLABLE_URI)
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
    # Blank until a path approves the frame: the enum must list "" too.
    approval_path = serializers.ChoiceField(
        choices=ApprovalPath.choices, allow_blank=True, read_only=True
    )
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

    @extend_schema_field(NULLABLE_URI)
    def get_image_url(self, obj: Frame) -> str | None:
        return absolute_url(self.context, obj.image)

    @extend_schema_field(serializers.ChoiceField(choices=["train", "heldout"], allow_null=True))
    def get_split(self, obj: Frame) -> str | None:
        splits: dict[int, str] = self.context.get("splits") or {}
        return splits.get(obj.story_id)


class PublishedFileSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    bytes = serializers.IntegerField()
    url = serializers.CharField(help_text="signed and expiring")


class ExportJobSerializer(serializers.ModelSerializer[ExportJob]):
    progress = serializers.SerializerMethodField()
    manifest_url = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField(
        help_text="the finished export's files in shared storage, with signed URLs "
        "(empty when exports stay on the worker's disk: use the files action)"
    )
    created_by = serializers.CharField(
        source="created_by.username", default=None, allow_null=True, read_only=True
    )

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
            "files",
            "error",
            "created_by",
            "created_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(PublishedFileSerializer(many=True))
    def get_files(self, obj: ExportJob) -> list[dict[str, Any]]:
        return published_files(obj.manifest)

    @extend_schema_field(OpenApiTypes.FLOAT)
    def get_progress(self, obj: ExportJob) -> float:
        return round(obj.done / obj.total, 4) if obj.total else 0.0

    @extend_schema_field(NULLABLE_URI)
    def get_manifest_url(self, obj: ExportJob) -> str | None:
        if obj.status != "done":
            return None
        return reverse("export-manifest", args=[obj.pk], request=self.context.get("request"))


class ExportStartSerializer(serializers.Serializer[dict[str, Any]]):
    """Parameters of a new export (checked again, fully, by the export service)."""

    formats = serializers.ListField(
        child=serializers.ChoiceField(choices=list(FORMATS)),
        required=False,
        max_length=len(FORMATS),
    )
    # Bounds that the JSON params column and the export's integers hold (a seed beyond 64 bits
    # or a holdout of 10**30 is a 400 here, not a broken job row).
    holdout_characters = WholeNumberField(min_value=0, max_value=1_000_000, required=False)
    holdout_stories = WholeNumberField(min_value=0, max_value=1_000_000, required=False)
    shard_max_bytes = WholeNumberField(
        min_value=MIN_SHARD_MAX_BYTES, max_value=2**40, required=False
    )
    include_partial_stories = serializers.BooleanField(required=False)
    seed = WholeNumberField(min_value=0, max_value=2**63 - 1, required=False)
