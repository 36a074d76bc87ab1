"""``/api/v1/statistics/``: every figure of the statistics page as JSON (admins only).

``GET /api/v1/statistics/`` returns all figures; ``GET /api/v1/statistics/<name>/`` one of them
(the names are the plot names of ``synthesis.plots.PLOTS`` plus ``hv3_escalation`` and
``expert_effort``: looks, dwell and expert-hours per review stage).
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from hilapp.roles import IsAdmin
from synthesis.services.statistics import statistics_all


class StatisticsViewSet(viewsets.ViewSet):
    permission_classes = [IsAdmin]
    # Any segment reaches the view, so an unknown name (dots included) is a JSON 404.
    lookup_value_regex = "[^/]+"

    @extend_schema(operation_id="statistics_list", responses={200: dict})
    def list(self, request: Request) -> Response:
        return Response(statistics_all())

    @extend_schema(
        operation_id="statistics_figure",
        parameters=[
            OpenApiParameter(
                "id", OpenApiTypes.STR, OpenApiParameter.PATH, description="figure name"
            )
        ],
        responses={200: dict, 404: dict},
    )
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        figures = statistics_all()
        if pk not in figures or pk == "version":
            raise NotFound(f"no figure {pk!r}; one of {sorted(set(figures) - {'version'})}")
        return Response({"version": figures["version"], pk: figures[pk]})
