"""Read-only admin for the review records (the audit trail is never edited or deleted)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from review.models import ReviewDecision, ReviewEvent, ReviewItem, ReviewLease, Vote


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class VoteInline(admin.TabularInline):
    model = Vote
    extra = 0
    can_delete = False
    fields = ("expert", "choice", "comment", "image_name", "instruction", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReviewItem)
class ReviewItemAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "stage",
        "subject_id",
        "subject_label",
        "status",
        "decided_choice",
        "votes_count",
        "leases_active",
        "priority",
        "created_at",
        "decided_at",
    ]
    list_filter = ["stage", "status", "decided_choice"]
    search_fields = ["=id", "=subject_id", "subject_label"]
    date_hierarchy = "created_at"
    inlines = [VoteInline]
    show_full_result_count = False


@admin.register(Vote)
class VoteAdmin(ReadOnlyAdmin):
    list_display = ["id", "item", "stage", "expert", "choice", "created_at"]
    list_filter = ["stage", "choice"]
    search_fields = ["=item__id", "expert__username", "comment", "idempotency_key"]
    raw_id_fields = ["item", "expert"]
    show_full_result_count = False


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(ReadOnlyAdmin):
    list_display = ["item", "stage", "subject_id", "choice", "decided_at"]
    list_filter = ["stage", "choice"]
    search_fields = ["=item__id", "=subject_id", "comment_summary"]
    raw_id_fields = ["item", "deciding_vote"]


@admin.register(ReviewLease)
class ReviewLeaseAdmin(ReadOnlyAdmin):
    list_display = ["item", "expert", "status", "acquired_at", "expires_at", "ended_at"]
    list_filter = ["status"]
    search_fields = ["=item__id", "expert__username"]
    raw_id_fields = ["item", "expert"]
    show_full_result_count = False


@admin.register(ReviewEvent)
class ReviewEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "item", "kind", "expert", "choice", "created_at"]
    list_filter = ["kind"]
    search_fields = ["=item__id", "expert__username", "comment"]
    raw_id_fields = ["item", "expert"]
    show_full_result_count = False
