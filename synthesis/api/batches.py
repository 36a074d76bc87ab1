"""``/api/v1/batches/``: launch (admins), list and follow batches, pause / resume / cancel.

The same launch services as the page and the CLI: bad parameters get a 400 with the reason and
create nothing.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from hilapp.roles import IsAdmin
from synthesis.api.common import ID_PATTERN, BudgetField, WholeNumberField
from synthesis.models import Batch
from synthesis.services.batch_lifecycle import (
    BatchActionError,
    batch_cancel,
    batch_launch,
    batch_pause,
    batch_resume,
)
from synthesis.services.batch_report import batch_report, batch_spend
from synthesis.services.launch_params import (
    MAX_BATCH_COUNT,
    MAX_SEED,
    LaunchError,
    clean_launch_request,
)
from synthesis.services.progress import batch_progress
from synthesis.states import BatchKind


class BatchLaunchSerializer(serializers.Serializer[Any]):
    """The launch parameters, checked here by the same cleaner the page and the CLI use
    (``synthesis.services.launch_params``), so a 400 names the field and nothing is created."""

    kind = serializers.ChoiceField(choices=BatchKind.choices)
    count = WholeNumberField(min_value=1, max_value=MAX_BATCH_COUNT, help_text="units to make")
    seed = WholeNumberField(min_value=0, max_value=MAX_SEED, required=False, default=0)
    budget_usd = BudgetField(required=False, allow_null=True, default=None)
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text="characters: subject_categories, profession_categories; stories: genres, "
        "min_frames, max_frames, max_cast; all: roles {role: 'provider:model=weight,…'}, "
        "sim {faults: {kind: rate}, latency_ms (0–60000)}. Unknown keys are refused.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            return clean_launch_request(**attrs)
        except LaunchError as exc:
            raise serializers.ValidationError({exc.field: [str(exc)]}) from None


class BatchSerializer(serializers.ModelSerializer[Batch]):
    done = serializers.SerializerMethodField()
    total = serializers.SerializerMethodField()
    spend_usd = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = [
            "id",
            "kind",
            "status",
            "seed",
            "requested",
            "params",
            "budget_usd",
            "note",
            "created_at",
            "finished_at",
            "done",
            "total",
            "spend_usd",
        ]

    def get_done(self, batch: Batch) -> int:
        return batch_progress(batch)[0]

    def get_total(self, batch: Batch) -> int:
        return batch_progress(batch)[1] or batch.requested

    def get_spend_usd(self, batch: Batch) -> float:
        return float(batch_spend(batch))


class ResumeSerializer(serializers.Serializer[Any]):
    budget_usd = BudgetField(required=False, allow_null=True, default=None)


class NewestFirst(CursorPagination):
    ordering = "-id"


class BatchViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[Batch]):
    """Admins only. The detail is the live report (counts, progress, ETA, spend, failures)."""

    queryset = Batch.objects.select_related("created_by")
    lookup_value_regex = ID_PATTERN
    serializer_class = BatchSerializer
    permission_classes = [IsAdmin]
    pagination_class = NewestFirst
    filterset_fields = ["kind", "status"]

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(batch_report(self.get_object()))

    @extend_schema(request=BatchLaunchSerializer, responses={201: dict, 400: dict})
    def create(self, request: Request) -> Response:
        launch = BatchLaunchSerializer(data=request.data)
        launch.is_valid(raise_exception=True)
        try:
            batch = batch_launch(created_by=request.user, **launch.validated_data)
        except LaunchError as exc:
            return Response(
                {"detail": str(exc), exc.field: [str(exc)]}, status=status.HTTP_400_BAD_REQUEST
            )
        return Response(batch_report(batch), status=status.HTTP_201_CREATED)

    def _act(self, service: Any, **extra: Any) -> Response:
        batch = self.get_object()
        try:
            service(batch_id=batch.pk, actor=self.request.user, **extra)
        except BatchActionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except LaunchError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        batch.refresh_from_db()
        return Response(batch_report(batch))

    @extend_schema(request=None, responses={200: dict, 409: dict})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._act(batch_pause)

    @extend_schema(request=ResumeSerializer, responses={200: dict, 409: dict})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        body = ResumeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._act(batch_resume, budget_usd=body.validated_data["budget_usd"])

    @extend_schema(request=None, responses={200: dict, 409: dict})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._act(batch_cancel)
