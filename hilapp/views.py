"""Project-level pages: the landing redirect, a health check and the error pages."""

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static

from hilapp.roles import is_admin, is_expert


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if is_expert(request.user):
        return redirect("review:home")
    if is_admin(request.user):
        return redirect("synthesis:batches")
    return redirect("api-docs")


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico; the icon is a static file (hashed name in production,
    resolved per request: the static manifest may not exist when URLs are imported)."""
    return redirect(static("favicon.svg"))


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})


# --- Error pages: styled HTML for people, JSON for API clients ----------------------------------

ERROR_TITLES = {
    403: ("Not allowed", "Your account may not open this page."),
    404: (
        "Page not found",
        "Nothing lives at this address. It may have moved, or the link is wrong.",
    ),
    500: ("Something went wrong", "The server could not finish this request; it has been logged."),
}


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path.startswith("/api/") or (
        "application/json" in accept and "text/html" not in accept
    )


def _error(request: HttpRequest, status: int) -> HttpResponse:
    title, text = ERROR_TITLES[status]
    if _wants_json(request):
        return JsonResponse({"detail": title + "."}, status=status)
    try:
        return render(request, f"{status}.html", {"title": title, "text": text}, status=status)
    except Exception:  # a broken template or database must not hide the original error
        return HttpResponse(f"<h1>{status} {title}</h1>", status=status)


def error_403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 403)


def error_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 404)


def error_500(request: HttpRequest) -> HttpResponse:
    return _error(request, 500)
