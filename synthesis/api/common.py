"""What the viewsets share: cursor pagination by id, who sees everything, absolute image URLs,
and the strict input fields (whole numbers, budgets) of the API's write endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.views import APIView

from hilapp.media import media_url
from hilapp.roles import AnyUser, is_admin, is_expert
from synthesis.services.launch_params import LaunchError, clean_budget, clean_whole_number

# Path ids that fit a 64-bit column; anything longer is a 404 from the router, not an
# overflow in the database driver.
ID_PATTERN = "[0-9]{1,18}"


class IdCursorPagination(CursorPagination):
    """Ascending ids: rows added while a client pages through appear after it, never twice."""

    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int:
        """``page_size`` must be a whole number from 1 to ``max_page_size``: 400 otherwise
        (DRF quietly falls back to the default, which hides a client's mistake)."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":
            return self.page_size
        try:
            return clean_whole_number(raw, field="page_size", low=1, high=self.max_page_size)
        except LaunchError as exc:
            raise ValidationError({"page_size": [str(exc)]}) from None

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": self.max_page_size,
                }
        return parameters


def sees_everything(user: AnyUser) -> bool:
    """Admins and experts read every row; consumers read only approved data."""
    return is_admin(user) or is_expert(user)


def absolute_url(context: Mapping[str, Any], name: str) -> str | None:
    if not name:
        return None
    url = media_url(name)
    request: Request | None = context.get("request")
    return request.build_absolute_uri(url) if request is not None else url


class WholeNumberField(serializers.IntegerField):
    """An integer from JSON or a form, and nothing else: DRF's IntegerField reads ``"1_0"`` as
    10 (through ``int()``) and ``1.0`` as 1; this one refuses them, and ``1.5`` and ``true``."""

    def to_internal_value(self, data: Any) -> int:
        low = self.min_value if self.min_value is not None else -(2**63)
        high = self.max_value if self.max_value is not None else 2**63 - 1
        try:
            return clean_whole_number(data, field=self.field_name or "value", low=low, high=high)
        except LaunchError as exc:
            raise ValidationError(str(exc)) from None


@extend_schema_field(OpenApiTypes.DECIMAL)
class BudgetField(serializers.Field):
    """USD as a decimal string (a JSON number is accepted too); the launch rules apply: finite,
    positive once rounded to 4 places, below the column's limit."""

    def to_internal_value(self, data: Any) -> Decimal | None:
        try:
            return clean_budget(data)
        except LaunchError as exc:
            raise ValidationError(str(exc)) from None

    def to_representation(self, value: Any) -> str | None:
        return None if value is None else str(value)
