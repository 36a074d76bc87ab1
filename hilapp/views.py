"""Project-level pages: the landing redirect and a health check."""

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect

from hilapp.roles import is_admin, is_expert


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if is_expert(request.user):
        return redirect("review:home")
    if is_admin(request.user):
        return redirect("synthesis:batches")
    return redirect("api-docs")


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
