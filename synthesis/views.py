"""Server-rendered admin pages of the synthesis app."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hilapp.roles import is_admin


@login_required
def batches(request: HttpRequest) -> HttpResponse:
    if not is_admin(request.user):
        raise PermissionDenied("Admins only.")
    return render(request, "synthesis/batches.html", {})
