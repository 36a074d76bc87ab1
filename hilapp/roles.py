"""Who may do what: the three roles of the product, in one place.

- admin: a staff user (launches batches, sees everything, exports);
- expert: a member of the ``experts`` group (votes in HV1/HV2/HV3);
- consumer: a member of the ``consumers`` group (reads approved data over the API).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser, Group
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

EXPERTS = "experts"
CONSUMERS = "consumers"

AnyUser = AbstractBaseUser | AnonymousUser


def _in_group(user: Any, group: str) -> bool:
    if not user.is_authenticated:
        return False
    names = getattr(user, "_hilapp_groups", None)
    if names is None:
        # Cached on the user object: a page asks several role questions per request.
        names = set(user.groups.values_list("name", flat=True))
        user._hilapp_groups = names
    return group in names


def is_admin(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_staff)


def is_expert(user: Any) -> bool:
    return _in_group(user, EXPERTS)


def is_consumer(user: Any) -> bool:
    return _in_group(user, CONSUMERS)


def add_to_role(user: Any, group: str) -> None:
    user.groups.add(Group.objects.get_or_create(name=group)[0])
    if hasattr(user, "_hilapp_groups"):
        del user._hilapp_groups


View = Callable[..., HttpResponse]


def role_required(check: Callable[[Any], bool], refusal: str) -> Callable[[View], View]:
    """The one page decorator for roles: log in first, then 403 with ``refusal`` unless
    ``check(user)``."""

    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not check(request.user):
                raise PermissionDenied(refusal)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def role_context(request: HttpRequest) -> dict[str, bool]:
    """Template context: which navigation a page may show."""
    user = request.user
    return {"user_is_admin": is_admin(user), "user_is_expert": is_expert(user)}


class IsAdmin(BasePermission):
    message = "Admins only."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return is_admin(request.user)


class IsExpert(BasePermission):
    message = "Experts only."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return is_expert(request.user)


class IsConsumerOrAbove(BasePermission):
    """Consumers, experts and admins may read approved data."""

    message = "Consumers, experts or admins only."

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return is_admin(user) or is_expert(user) or is_consumer(user)
