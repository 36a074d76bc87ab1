"""Review pages: thin views over ``review.selectors`` and ``review.services``.

The review page is a shell; ``static/review/review.js`` pulls server-rendered item cards from
``next_card`` (pre-fetching the next one) and posts votes to the REST API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.utils import timezone

from hilapp.roles import is_admin, is_expert
from review import selectors
from review.agreement import expert_agreement, stage_agreement
from review.handlers import present_subject
from review.models import ItemStatus, ReviewItem
from review.serializers import _choices
from review.services import review_queue_next
from review.stages import Stage

View = Callable[..., HttpResponse]
UNDO_MS_DEFAULT = 4000
# The stages experts review in the browser (the gate audit comes with its own issue).
REVIEW_STAGES = (Stage.HV1, Stage.HV2, Stage.HV3)


def _role_required(check: Callable[[Any], bool]) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not check(request.user):
                raise PermissionDenied("Experts only.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


expert_required = _role_required(is_expert)
expert_or_admin_required = _role_required(lambda u: is_expert(u) or is_admin(u))


def _stage(stage: str) -> Stage:
    if stage not in Stage.values:
        raise Http404("No such review stage.")
    return Stage(stage)


@expert_or_admin_required
def home(request: HttpRequest) -> HttpResponse:
    depths = selectors.queue_depths()
    stages = [{"value": s.value, "label": s.label, "depth": depths[s.value]} for s in REVIEW_STAGES]
    return render(
        request,
        "review/home.html",
        {
            "stages": stages,
            "votes_today": selectors.expert_votes_today(request.user),
            "recent": selectors.expert_recent_items(request.user, limit=10),
            "can_vote": is_expert(request.user),
        },
    )


def _undo_ms(request: HttpRequest) -> int:
    try:
        return max(0, min(int(request.GET.get("undo_ms", UNDO_MS_DEFAULT)), 10_000))
    except ValueError:
        return UNDO_MS_DEFAULT


@expert_required
def stage_page(request: HttpRequest, stage: str) -> HttpResponse:
    current = _stage(stage)
    return render(
        request,
        "review/review.html",
        {
            "stage": current,
            "choices": _choices(current.value),
            "undo_ms": _undo_ms(request),
        },
    )


def _card(request: HttpRequest, item: ReviewItem) -> str:
    view = present_subject(item.stage, item.subject_id, item.subject_label)
    subject_html = render_to_string(view.template, {**view.context, "item": item}, request)
    return render_to_string(
        "review/_card.html",
        {"item": item, "subject_html": subject_html, "choices": _choices(item.stage)},
        request,
    )


@expert_required
def next_card(request: HttpRequest, stage: str) -> HttpResponse:
    """The next item's card as an HTML fragment (``X-Review-Item`` names it), or 204."""
    raw = request.GET.get("exclude", "")
    try:
        exclude = [int(p) for p in raw.split(",") if p.strip()][:20]
    except ValueError:
        exclude = []
    item = review_queue_next(expert=request.user, stage=_stage(stage).value, exclude=exclude)
    if item is None:
        return HttpResponse(status=204)
    response = HttpResponse(_card(request, item))
    response["X-Review-Item"] = str(item.pk)
    response["Cache-Control"] = "no-store"
    return response


@expert_or_admin_required
def item_page(request: HttpRequest, item_id: int) -> HttpResponse:
    """One item: its subject and, once decided, the outcome. Votes for admins only (blind)."""
    item = get_object_or_404(ReviewItem, pk=item_id)
    view = present_subject(item.stage, item.subject_id, item.subject_label)
    admin = is_admin(request.user)
    return render(
        request,
        "review/item.html",
        {
            "item": item,
            "subject_html": render_to_string(
                view.template, {**view.context, "item": item}, request
            ),
            "decided": item.status == ItemStatus.DECIDED,
            "my_vote": selectors.expert_vote_on(request.user, item),
            "votes": selectors.item_votes(item) if admin else None,
            "events": selectors.item_events(item) if admin else None,
        },
    )


@expert_or_admin_required
def agreement_page(request: HttpRequest) -> HttpResponse:
    try:
        days = max(1, int(request.GET.get("days", "30")))
    except ValueError:
        days = 30
    since = timezone.now() - timedelta(days=days)
    only = None if is_admin(request.user) else request.user.pk
    return render(
        request,
        "review/agreement.html",
        {
            "days": days,
            "stages": stage_agreement(since=since),
            "experts": expert_agreement(since=since, expert_id=only),
        },
    )
