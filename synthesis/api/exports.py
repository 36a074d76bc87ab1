"""Export jobs over the API: admins start them; everyone with a role follows and downloads.

Downloads serve files of a finished export folder only (a path is resolved and must stay
inside that folder); list rows carry progress and a manifest link, never file contents.
"""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from hilapp.roles import IsAdmin, IsConsumerOrAbove
from synthesis.api.common import ID_PATTERN, IdCursorPagination
from synthesis.api.serializers import ExportJobSerializer, ExportStartSerializer
from synthesis.export.jobs import export_job_start
from synthesis.export.options import MANIFEST_NAME, ExportError
from synthesis.models import ExportJob
from synthesis.states import ExportStatus

MAX_PATH_CHARS = 1024


class ExportViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet[ExportJob],
):
    serializer_class = ExportJobSerializer
    pagination_class = IdCursorPagination
    queryset = ExportJob.objects.select_related("created_by").order_by("id")
    lookup_value_regex = ID_PATTERN
    filterset_fields = ["status"]

    def get_permissions(self) -> list[BasePermission]:
        if self.action == "create":
            return [IsAdmin()]
        return [IsConsumerOrAbove()]

    @extend_schema(request=ExportStartSerializer, responses={202: ExportJobSerializer})
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        """Start an export job (admins only); follow it with GET until ``done``."""
        params = ExportStartSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            job = export_job_start(params=dict(params.validated_data), user=request.user)
        except ExportError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        body = ExportJobSerializer(job, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_202_ACCEPTED)

    def _finished_file(self, relative: str) -> Path:
        job = self.get_object()
        if job.status != ExportStatus.DONE:
            raise Http404("The export is not finished.")
        if len(relative) > MAX_PATH_CHARS or "\x00" in relative:
            raise ValidationError({"path": f"A path of at most {MAX_PATH_CHARS} characters."})
        root = Path(job.out_dir).resolve()
        try:  # an overlong name is an OSError (ENAMETOOLONG) from the file system
            path = (root / relative).resolve()
            found = path.is_relative_to(root) and path.is_file()
        except OSError:
            found = False
        if not found:
            raise Http404("No such file in this export.")
        return path

    @extend_schema(responses={(200, "application/json"): OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def manifest(self, request: Request, pk: str | None = None) -> FileResponse:
        """The export's manifest.json: counts, splits and the sha256 of every file."""
        path = self._finished_file(MANIFEST_NAME)
        return FileResponse(open(path, "rb"), content_type="application/json")

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "path", str, required=True, description="a path listed in the manifest"
            )
        ],
        responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY)},
    )
    @action(detail=True, methods=["get"])
    def files(self, request: Request, pk: str | None = None) -> FileResponse:
        """Download one file of a finished export (a shard, the index, the card, …)."""
        relative = request.query_params.get("path", "")
        if not relative:
            raise ValidationError({"path": "Give the path of a file listed in the manifest."})
        found = self._finished_file(relative)
        return FileResponse(open(found, "rb"), as_attachment=True, filename=found.name)
