"""Review REST API: thin views over ``review.services`` and ``review.selectors``.

Experts pull items and vote; admins read everything (votes included); anyone else gets 403.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hilapp.roles import IsAdmin, IsExpert, is_admin
from review.agreement import expert_agreement, stage_agreement
from review.guidelines import guideline_for
from review.models import ReviewItem
from review.queue import EXCLUDE_MAX
from review.serializers import (
    AdminItemSerializer,
    ItemSerializer,
    OutcomeSerializer,
    RevisionInputSerializer,
    VoteInputSerializer,
)
from review.services import (
    VoteRefused,
    review_lease_release,
    review_queue_next,
    vote_cast,
    vote_revise,
)
from review.stages import Stage

REFUSAL_STATUS = {
    "not_found": status.HTTP_404_NOT_FOUND,
    "invalid": status.HTTP_400_BAD_REQUEST,
}


def refusal_response(exc: VoteRefused) -> Response:
    return Response(
        {"detail": exc.message, "code": exc.code},
        status=REFUSAL_STATUS.get(exc.code, status.HTTP_409_CONFLICT),
    )


def _stage_param(request: Request) -> str:
    stage = request.query_params.get("stage", "")
    if stage not in Stage.values:
        raise ValidationError({"stage": f"Give stage as one of: {', '.join(Stage.values)}."})
    return stage


def parse_exclude(raw: str | None) -> list[int]:
    if not raw:
        return []
    try:
        ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise ValidationError({"exclude": "A comma-separated list of item ids."}) from exc
    if len(ids) > EXCLUDE_MAX:
        raise ValidationError({"exclude": f"At most {EXCLUDE_MAX} item ids."})
    if any(not 0 < i < 2**63 for i in ids):  # beyond 64 bits the database driver overflows
        raise ValidationError({"exclude": "Item ids are whole numbers from 1 to 2**63-1."})
    return ids


class NextItemView(APIView):
    permission_classes = [IsExpert]

    @extend_schema(
        parameters=[
            OpenApiParameter("stage", str, enum=Stage.values, required=True),
            OpenApiParameter(
                "exclude",
                str,
                description=(
                    "comma-separated ids of items the client still shows or holds "
                    f"(at most {EXCLUDE_MAX}); they are never handed out again"
                ),
            ),
        ],
        responses={200: ItemSerializer, 204: None},
    )
    def get(self, request: Request) -> Response:
        stage = _stage_param(request)
        item = review_queue_next(
            expert=request.user,
            stage=stage,
            exclude=parse_exclude(request.query_params.get("exclude")),
        )
        if item is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(ItemSerializer(item, context={"user": request.user}).data)


class ItemDetailView(APIView):
    permission_classes = [IsExpert | IsAdmin]

    @extend_schema(responses=AdminItemSerializer)
    def get(self, request: Request, item_id: int) -> Response:
        item = get_object_or_404(ReviewItem, pk=item_id)
        serializer = AdminItemSerializer if is_admin(request.user) else ItemSerializer
        return Response(serializer(item, context={"user": request.user}).data)


class VoteView(APIView):
    permission_classes = [IsExpert]
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(request=VoteInputSerializer, responses={201: OutcomeSerializer})
    def post(self, request: Request, item_id: int) -> Response:
        data = VoteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data.get("image")
        image = upload.read() if upload is not None else None
        try:
            outcome = vote_cast(
                item_id=item_id,
                expert=request.user,
                choice=data.validated_data["choice"],
                comment=data.validated_data["comment"],
                idempotency_key=data.validated_data["idempotency_key"],
                image=image,
                instruction=data.validated_data["instruction"],
                dwell_ms=data.validated_data["dwell_ms"],
                guideline_version=data.validated_data["guideline_version"],
            )
        except VoteRefused as exc:
            return refusal_response(exc)
        return Response(
            OutcomeSerializer(asdict(outcome)).data,
            status=status.HTTP_200_OK if outcome.replayed else status.HTTP_201_CREATED,
        )


class MyVoteView(APIView):
    """Change my vote while the item is open (409 ``decided`` once it is: a decision is final)."""

    permission_classes = [IsExpert]
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(request=RevisionInputSerializer, responses={200: OutcomeSerializer})
    def put(self, request: Request, item_id: int) -> Response:
        data = RevisionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data.get("image")
        try:
            outcome = vote_revise(
                item_id=item_id,
                expert=request.user,
                choice=data.validated_data["choice"],
                comment=data.validated_data.get("comment"),
                image=upload.read() if upload is not None else None,
                instruction=data.validated_data["instruction"],
                dwell_ms=data.validated_data["dwell_ms"],
            )
        except VoteRefused as exc:
            return refusal_response(exc)
        return Response(OutcomeSerializer(asdict(outcome)).data)


class GuidelinesView(APIView):
    """The stage's guidelines: version (send it with votes) and the rendered HTML."""

    permission_classes = [IsExpert | IsAdmin]

    @extend_schema(
        parameters=[OpenApiParameter("stage", str, enum=Stage.values, required=True)],
        responses={200: dict},
    )
    def get(self, request: Request) -> Response:
        guideline = guideline_for(_stage_param(request))
        return Response(
            {"stage": guideline.stage, "version": guideline.version, "html": str(guideline.html)}
        )


class ReleaseView(APIView):
    """Give the seat back (skip): the item is not offered to this expert again for a while."""

    permission_classes = [IsExpert]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, item_id: int) -> Response:
        get_object_or_404(ReviewItem, pk=item_id)
        review_lease_release(expert=request.user, item_id=item_id, skipped=True)
        return Response(status=status.HTTP_204_NO_CONTENT)


def agreement_data(user: Any, days: int | None) -> dict[str, Any]:
    since = timezone.now() - timedelta(days=days) if days else None
    only = None if is_admin(user) else user.pk
    return {
        "days": days,
        "stages": [asdict(s) for s in stage_agreement(since=since)],
        "experts": [asdict(e) for e in expert_agreement(since=since, expert_id=only)],
    }


DAYS_MAX = 36_500


def parse_days(raw: str | None) -> int | None:
    if not raw:
        return None
    try:
        days = int(raw)
    except ValueError as exc:
        raise ValidationError({"days": "A whole number of days."}) from exc
    if days < 1:
        raise ValidationError({"days": "At least one day."})
    if days > DAYS_MAX:  # a timedelta of more days overflows
        raise ValidationError({"days": f"At most {DAYS_MAX} days."})
    return days


class AgreementView(APIView):
    """Per stage Fleiss' kappa and pairwise agreement; per expert agreement with the outcome
    and votes per hour (admins see every expert, an expert sees their own row)."""

    permission_classes = [IsExpert | IsAdmin]

    @extend_schema(parameters=[OpenApiParameter("days", int)], responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(agreement_data(request.user, parse_days(request.query_params.get("days"))))
