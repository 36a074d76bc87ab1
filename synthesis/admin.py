"""Django admin for every synthesis model: read-mostly (statuses change only through services),
with list filters, search and links between related rows."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from synthesis.models import (
    Batch,
    Character,
    ExportJob,
    Frame,
    FrameCharacter,
    GateAttempt,
    ModelCall,
    StatusChange,
    Story,
    StoryCast,
)


def admin_link(obj: Model | None, label: str | None = None) -> SafeString | str:
    if obj is None:
        return "—"
    meta = obj._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or str(obj))


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows are written by the pipeline; the admin only shows them. No one deletes here, not
    even a superuser (no delete page, no bulk "delete selected" action): batches, frames, the
    cost ledger and the status-change audit are the record of what was made and spent."""

    list_per_page = 50
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "requested",
        "budget_usd",
        "created_by",
        "created_at",
        "page_link",
    ]
    list_filter = ["kind", "status", "created_at"]
    search_fields = ["id", "note"]
    date_hierarchy = "created_at"

    @admin.display(description="live page")
    def page_link(self, batch: Batch) -> SafeString:
        return format_html('<a href="{}">progress</a>', reverse("synthesis:batch", args=[batch.pk]))


@admin.register(Character)
class CharacterAdmin(ReadOnlyAdmin):
    list_display = [
        "cid",
        "name",
        "status",
        "subject_category",
        "subject_type",
        "profession_category",
        "viescore_overall",
        "batch_link",
        "created_at",
    ]
    list_filter = [
        "status",
        "subject_category",
        "profession_category",
        "planner_model",
        "renderer_model",
        "judge_model",
    ]
    search_fields = ["cid", "name", "subject_type", "profession", "visual_description", "reason"]
    list_select_related = ["batch"]

    @admin.display(description="batch", ordering="batch")
    def batch_link(self, character: Character) -> SafeString | str:
        return admin_link(character.batch, f"batch {character.batch_id}")


class StoryCastInline(admin.TabularInline):
    model = StoryCast
    readonly_fields = (
        "order",
        "character",
    )
    fields = readonly_fields
    extra = 0
    max_num = 0


class FrameInline(admin.TabularInline):
    model = Frame
    readonly_fields = (
        "index",
        "status",
        "audit",
        "approval_path",
        "round",
        "frame_text",
    )
    fields = readonly_fields
    extra = 0
    max_num = 0
    show_change_link = True


@admin.register(Story)
class StoryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "title",
        "genre",
        "status",
        "repairs",
        "batch_link",
        "created_at",
        "storybook_link",
    ]
    list_filter = ["status", "genre", "planner_model"]
    search_fields = ["id", "title", "genre", "reason"]
    list_select_related = ["batch"]
    inlines = [StoryCastInline, FrameInline]

    @admin.display(description="batch", ordering="batch")
    def batch_link(self, story: Story) -> SafeString | str:
        return admin_link(story.batch, f"batch {story.batch_id}")

    @admin.display(description="storybook")
    def storybook_link(self, story: Story) -> SafeString:
        return format_html(
            '<a href="{}">storybook</a>', reverse("synthesis:story", args=[story.pk])
        )


@admin.register(StoryCast)
class StoryCastAdmin(ReadOnlyAdmin):
    list_display = ["story", "order", "character"]
    search_fields = ["story__title", "character__cid", "character__name"]
    list_select_related = ["story", "character"]


class FrameCharacterInline(admin.TabularInline):
    model = FrameCharacter
    readonly_fields = (
        "slot",
        "character",
        "pid",
        "eid",
        "ctag",
        "reference_status",
        "iterations",
    )
    fields = readonly_fields
    extra = 0
    max_num = 0
    show_change_link = True


@admin.register(Frame)
class FrameAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "story_link",
        "index",
        "status",
        "audit",
        "approval_path",
        "round",
        "synthesizer_model",
        "arbitrator_model",
        "updated_at",
        "provenance_link",
    ]
    list_filter = ["status", "audit", "approval_path", "synthesizer_model", "arbitrator_model"]
    search_fields = ["id", "frame_text", "story__title", "reason"]
    list_select_related = ["story"]
    inlines = [FrameCharacterInline]

    @admin.display(description="story", ordering="story")
    def story_link(self, frame: Frame) -> SafeString | str:
        return admin_link(frame.story)

    @admin.display(description="provenance")
    def provenance_link(self, frame: Frame) -> SafeString:
        return format_html(
            '<a href="{}">provenance</a>', reverse("synthesis:frame-provenance", args=[frame.pk])
        )


@admin.register(FrameCharacter)
class FrameCharacterAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "frame_link",
        "slot",
        "character",
        "pid",
        "eid",
        "ctag",
        "reference_status",
        "iterations",
        "reference_model",
    ]
    list_filter = ["reference_status", "reference_model"]
    search_fields = ["character__cid", "character__name", "pid", "eid", "ctag"]
    list_select_related = ["frame", "character"]

    @admin.display(description="frame", ordering="frame")
    def frame_link(self, fc: FrameCharacter) -> SafeString | str:
        return admin_link(fc.frame)


@admin.register(GateAttempt)
class GateAttemptAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "subject_link",
        "number",
        "round",
        "action",
        "status",
        "score_overall",
        "error_scope",
        "producer_model",
        "judge_model",
        "created_at",
    ]
    list_filter = ["kind", "status", "action", "error_scope", "producer_model", "judge_model"]
    search_fields = ["id", "prompt_text", "instruction", "diagnostic", "error"]
    list_select_related = ["character", "reference", "frame"]

    @admin.display(description="subject")
    def subject_link(self, attempt: GateAttempt) -> SafeString | str:
        return admin_link(attempt.character or attempt.reference or attempt.frame)


@admin.register(ModelCall)
class ModelCallAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "role",
        "provider",
        "model",
        "status",
        "cost_usd",
        "latency_ms",
        "try_number",
        "error_kind",
        "batch_link",
        "attempt_link",
        "started_at",
    ]
    list_filter = ["status", "role", "provider", "model", "error_kind", "prompt_name"]
    search_fields = ["id", "subject", "seed_key", "error"]
    list_select_related = ["batch", "attempt"]
    date_hierarchy = "started_at"

    @admin.display(description="batch", ordering="batch")
    def batch_link(self, call: ModelCall) -> SafeString | str:
        return admin_link(call.batch, f"batch {call.batch_id}") if call.batch_id else "—"

    @admin.display(description="attempt", ordering="attempt")
    def attempt_link(self, call: ModelCall) -> SafeString | str:
        return admin_link(call.attempt, f"attempt {call.attempt_id}") if call.attempt_id else "—"


@admin.register(StatusChange)
class StatusChangeAdmin(ReadOnlyAdmin):
    list_display = ["id", "model", "object_id", "old", "new", "actor", "at", "short_reason"]
    list_filter = ["model", "new", "actor"]
    search_fields = ["=object_id", "reason"]
    date_hierarchy = "at"

    @admin.display(description="reason")
    def short_reason(self, change: StatusChange) -> str:
        return change.reason[:120]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the audit trail is append-only


@admin.register(ExportJob)
class ExportJobAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "status",
        "done",
        "total",
        "out_dir",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "created_at"]
    search_fields = ["id", "out_dir", "error"]
