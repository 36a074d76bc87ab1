"""Server-rendered admin pages of the synthesis app: batches, exports, statistics, stories
(gallery and storybook) and the gate audit.

Views parse, delegate to services/selectors and render; admins only (experts get 403).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from hilapp.roles import is_admin, role_required
from synthesis.export.downloads import export_downloads
from synthesis.export.jobs import export_job_start
from synthesis.export.options import ExportError
from synthesis.export.service import LAYOUT
from synthesis.forms import BatchLaunchForm, ExportStartForm
from synthesis.models import Batch, ExportJob
from synthesis.services.batch_lifecycle import (
    BatchActionError,
    batch_cancel,
    batch_launch,
    batch_pause,
    batch_resume,
)
from synthesis.services.batch_report import batch_report
from synthesis.services.launch_params import LaunchError
from synthesis.services.progress import batch_progress
from synthesis.services.queue_health import queues_health
from synthesis.services.storybook import (
    GalleryFilter,
    audit_queue,
    batch_stories,
    story_book,
    story_gallery,
    story_genres,
)
from synthesis.story_forms import GalleryFilterForm

View = Callable[..., HttpResponse]
DOWNLOAD_JOBS = 10


admin_only = role_required(is_admin, "Admins only.")


@admin_only
def batches(request: HttpRequest) -> HttpResponse:
    """The batch list and the launch form (POST launches, then shows the new batch)."""
    form = BatchLaunchForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            batch = batch_launch(created_by=request.user, **form.launch_arguments())
        except LaunchError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Launched batch {batch.pk}: {batch.requested} {batch.kind}.")
            return redirect("synthesis:batch", pk=batch.pk)
    rows = []
    for batch in Batch.objects.select_related("created_by")[:100]:
        done, total = batch_progress(batch)
        rows.append(
            {
                "batch": batch,
                "done": done,
                "total": total or batch.requested,
                "percent": round(100 * done / total) if total else 0,
            }
        )
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "rows": rows, "queues": queues_health()}
    return render(request, "synthesis/batches.html", context, status=status)


@admin_only
def batch_detail(request: HttpRequest, pk: int) -> HttpResponse:
    batch = get_object_or_404(Batch.objects.select_related("created_by"), pk=pk)
    context = {
        "batch": batch,
        "report": batch_report(batch),
        "params_json": json.dumps(batch.params, indent=2, sort_keys=True),
        "all_actions": list(ACTIONS),
        "stories": batch_stories(batch_id=batch.pk),
    }
    return render(request, "synthesis/batch_detail.html", context)


ACTIONS = {"pause": batch_pause, "resume": batch_resume, "cancel": batch_cancel}


@admin_only
@require_POST
def batch_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    service = ACTIONS.get(action)
    if service is None:
        raise Http404(action)
    batch = get_object_or_404(Batch, pk=pk)
    try:
        extra = {}
        if action == "resume" and request.POST.get("budget_usd"):
            extra["budget_usd"] = request.POST["budget_usd"]
        service(batch_id=batch.pk, actor=request.user, **extra)
    except (BatchActionError, LaunchError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Batch {batch.pk}: {action} done.")
    return redirect("synthesis:batch", pk=batch.pk)


@admin_only
def exports(request: HttpRequest) -> HttpResponse:
    """Dataset exports: the start form (POST queues an export job) and the recent jobs, whose
    progress the page polls from ``GET /api/v1/exports/<id>/``."""
    form = ExportStartForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            job = export_job_start(params=form.params(), user=request.user)
        except ExportError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Export {job.pk} queued; it writes to {job.out_dir}.")
            return redirect("synthesis:exports")
    jobs = list(ExportJob.objects.select_related("created_by")[:50])
    # Download links for the latest finished jobs (each reads its manifest.json).
    for job in jobs[:DOWNLOAD_JOBS]:
        job.downloads = export_downloads(job)  # type: ignore[attr-defined]
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "jobs": jobs, "layout": LAYOUT}
    return render(request, "synthesis/exports.html", context, status=status)


@admin_only
def statistics(request: HttpRequest) -> HttpResponse:
    from synthesis.plots import PLOTS
    from synthesis.services.statistics import statistics_all

    stats = statistics_all()
    plots = [{"name": name, "title": title} for name, (title, _draw, _size) in PLOTS.items()]
    return render(request, "synthesis/statistics.html", {"stats": stats, "plots": plots})


@admin_only
def plot(request: HttpRequest, name: str) -> HttpResponse:
    from synthesis.plots import plot_png

    try:
        png = plot_png(name)
    except KeyError:
        raise Http404(f"no plot {name!r}") from None
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=30"
    return response


@admin_only
def frame_provenance(request: HttpRequest, pk: int) -> HttpResponse:
    """A frame's whole history: prompts, attempts, verdicts, edits, models, costs, votes."""
    from synthesis.models import Frame
    from synthesis.services.provenance import frame_provenance as provenance

    try:
        history = provenance(frame_id=pk)
    except Frame.DoesNotExist:
        raise Http404(f"no frame {pk}") from None
    return render(request, "synthesis/provenance.html", history)


@admin_only
def stories(request: HttpRequest) -> HttpResponse:
    """The gallery of finished stories, filtered by genre, cast size, character, approval path."""
    form = GalleryFilterForm(request.GET or None, genres=story_genres())
    if request.GET and not form.is_valid():
        context = {"form": form, "stories": [], "more": False}
        return render(request, "synthesis/stories.html", context, status=400)
    filters = form.filters() if request.GET else GalleryFilter()
    gallery = story_gallery(filters)
    return render(request, "synthesis/stories.html", {"form": form, **gallery})


@admin_only
def story(request: HttpRequest, pk: int) -> HttpResponse:
    """A finished (or unfinished) story as a storybook: frames in order, cast, IDs, paths."""
    from synthesis.models import Story

    try:
        book = story_book(story_id=pk)
    except Story.DoesNotExist:
        raise Http404(f"no story {pk}") from None
    return render(request, "synthesis/story.html", book)


@admin_only
def audit(request: HttpRequest) -> HttpResponse:
    """The gate audit: its open queue, the latest decisions and the false-accept rate."""
    from synthesis.services.statistics import gate_audit

    return render(request, "synthesis/audit.html", {"stats": gate_audit(), **audit_queue()})
