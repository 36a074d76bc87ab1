"""Review pages: thin views over ``review.selectors`` and ``review.services``.

The review page is a shell; ``static/review/review.js`` pulls server-rendered item cards from
``next_card`` (pre-fetching the next one) and posts votes to the REST API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_POST

from hilapp.roles import is_admin, is_expert, role_required
from review import selectors
from review.agreement import expert_agreement, stage_agreement
from review.guidelines import guideline_for
from review.handlers import present_subject
from review.models import ItemStatus, ReviewItem
from review.queue import EXCLUDE_MAX
from review.serializers import _choices
from review.services import VoteRefused, review_queue_next, vote_revise
from review.stages import Stage

View = Callable[..., HttpResponse]
UNDO_MS_DEFAULT = 4000
# Every stage experts review in the browser, the gate audit included.
REVIEW_STAGES = (Stage.HV1, Stage.HV2, Stage.HV3, Stage.AUDIT)


expert_required = role_required(is_expert, "Experts only.")
expert_or_admin_required = role_required(lambda u: is_expert(u) or is_admin(u), "Experts only.")


def _stage(stage: str) -> Stage:
    if stage not in Stage.values:
        raise Http404("No such review stage.")
    return Stage(stage)


@expert_or_admin_required
def home(request: HttpRequest) -> HttpResponse:
    depths = selectors.queue_depths()
    can_vote = is_expert(request.user)
    progress = selectors.expert_progress_today(request.user)
    stages = [
        {
            "value": s.value,
            "label": s.label,
            "depth": depths[s.value],
            "mine": selectors.waiting_for(request.user, s.value) if can_vote else 0,
            "today": progress.by_stage[s.value],
        }
        for s in REVIEW_STAGES
    ]
    return render(
        request,
        "review/home.html",
        {
            "stages": stages,
            "cap": selectors.COUNT_CAP,
            "progress": progress,
            "votes_today": progress.votes,
            "recent": selectors.expert_recent_items(request.user, limit=10),
            "can_vote": can_vote,
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
            "guideline": guideline_for(current.value),
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
    """The next item's card as an HTML fragment, or 204 when nothing waits for this expert.

    ``exclude`` carries every item the page has shown or holds. Headers: ``X-Review-Item`` (the
    item), ``X-Review-Remaining`` (open items of the stage without this expert's vote and not
    excluded, this one included); on 204, ``X-Review-Held`` (such items whose seats others hold) and
    ``X-Review-Retry-After`` (seconds until the first of those leases runs out).
    """
    current = _stage(stage).value
    raw = request.GET.get("exclude", "")
    try:
        exclude = [int(p) for p in raw.split(",") if p.strip()][:EXCLUDE_MAX]
    except ValueError:
        exclude = []
    item = review_queue_next(expert=request.user, stage=current, exclude=exclude)
    if item is None:
        response = HttpResponse(status=204)
        held = selectors.held_by_others(request.user, current, exclude)
        response["X-Review-Held"] = str(held.items)
        if held.first_free_at is not None:
            wait = (held.first_free_at - timezone.now()).total_seconds()
            response["X-Review-Retry-After"] = str(max(1, round(wait + 0.5)))
        return response
    response = HttpResponse(_card(request, item))
    response["X-Review-Item"] = str(item.pk)
    response["X-Review-Remaining"] = str(selectors.remaining_for(request.user, current, exclude))
    response["Cache-Control"] = "no-store"
    return response


@expert_or_admin_required
def item_page(request: HttpRequest, item_id: int) -> HttpResponse:
    """One item: its subject and, once decided, the outcome. Votes for admins only (blind)."""
    item = get_object_or_404(ReviewItem, pk=item_id)
    view = present_subject(item.stage, item.subject_id, item.subject_label)
    admin = is_admin(request.user)
    my_vote = selectors.expert_vote_on(request.user, item)
    decided = item.status == ItemStatus.DECIDED
    return render(
        request,
        "review/item.html",
        {
            "item": item,
            "subject_html": render_to_string(
                view.template, {**view.context, "item": item}, request
            ),
            "decided": decided,
            "my_vote": my_vote,
            # Revising is open to the expert who voted, until the item is decided.
            "revisable": my_vote is not None and not decided and is_expert(request.user),
            "choices": _choices(item.stage),
            "votes": selectors.item_votes(item) if admin else None,
            "events": selectors.item_events(item) if admin else None,
        },
    )


def _dwell_ms(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


@require_POST
@expert_required
def revise_vote(request: HttpRequest, item_id: int) -> HttpResponse:
    """Change my vote on an open item (the form on the item page)."""
    item = get_object_or_404(ReviewItem, pk=item_id)
    upload = request.FILES.get("image")
    try:
        outcome = vote_revise(
            item_id=item.pk,
            expert=request.user,
            choice=request.POST.get("choice", ""),
            comment=request.POST.get("comment"),
            image=upload.read() if upload is not None else None,
            instruction=request.POST.get("instruction", ""),
            dwell_ms=_dwell_ms(request.POST.get("dwell_ms")),
        )
    except VoteRefused as exc:
        messages.error(request, exc.message)
    else:
        if outcome.replayed:
            messages.info(request, f"Your vote already is {outcome.choice}.")
        elif outcome.decided:
            messages.success(
                request, f"Vote changed to {outcome.choice}; the item is decided: {outcome.choice}."
            )
        else:
            messages.success(request, f"Vote changed to {outcome.choice}.")
    return redirect("review:item", item_id=item.pk)


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
