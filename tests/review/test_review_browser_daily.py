"""An expert's working day in real Chromium: fast keyboard voting, guidelines, revising a vote,
and the audit stage reached from the review home."""

from __future__ import annotations

from typing import Any

import pytest

from review.models import Vote
from review.services import review_item_open, vote_cast

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Every card that enters the page and every error toast, recorded in the page itself.
RECORDER = """() => {
  window.__shown = []; window.__errors = [];
  const stage = document.getElementById('review-stage');
  const note = () => {
    const card = stage.querySelector('.review-card');
    if (card && window.__shown[window.__shown.length - 1] !== card) {
      window.__shown.push(card); window.__shownIds = window.__shown.map(c => c.dataset.itemId);
    }
  };
  new MutationObserver(note).observe(stage, {childList: true});
  note();
  const toast = document.getElementById('review-toast');
  new MutationObserver(() => {
    if (toast.classList.contains('error')) window.__errors.push(toast.textContent);
  }).observe(toast, {attributes: true, childList: true, subtree: true});
}"""


def login(browser: Any, base: str, user: Any, password: str) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/review/")
    return page


def test_four_keys_a_second_over_thirty_items_each_seen_once_no_refusal(
    live_server: Any, browser: Any, experts: list[Any], user_password: str, decisions: Any
) -> None:
    items = [
        review_item_open(stage="hv2", subject_id=900_000 + n, subject_label=f"Story {n}")
        for n in range(30)
    ]
    page = login(browser, live_server.url, experts[0], user_password)
    page.goto(f"{live_server.url}/review/hv2/?undo_ms=4000")
    page.wait_for_selector(".review-card")
    page.evaluate(RECORDER)
    assert page.inner_text("#review-remaining") == "30 left for you"
    pressed = 0
    for _ in range(60):  # 4 keys a second until every item had its key press
        if page.query_selector(".review-card") is not None:
            page.keyboard.press("a")
            pressed += 1
        if pressed == 30:
            break
        page.wait_for_timeout(250)
    assert pressed == 30
    page.wait_for_selector(".empty")
    shown = page.evaluate("window.__shownIds")
    assert len(shown) == 30 and len(set(shown)) == 30, shown
    # The last vote waits out its undo window; then every vote is in, none refused.
    page.wait_for_selector(
        f"#review-toast:has-text('Vote recorded on item #{shown[-1]}')", timeout=10_000
    )
    assert page.evaluate("window.__errors") == []
    votes = Vote.objects.filter(expert=experts[0])
    assert sorted(votes.values_list("item_id", flat=True)) == sorted(i.pk for i in items)
    assert all(v.dwell_ms is not None and 0 <= v.dwell_ms < 60_000 for v in votes)
    assert len({v.guideline_version for v in votes}) == 1 and votes[0].guideline_version


def test_guidelines_show_on_the_first_visit_and_on_g(
    live_server: Any, browser: Any, experts: list[Any], user_password: str
) -> None:
    review_item_open(stage="hv1", subject_id=910_001, subject_label="Guided")
    page = login(browser, live_server.url, experts[0], user_password)
    page.goto(f"{live_server.url}/review/hv1/")
    page.wait_for_selector(".review-card")
    panel = page.locator("#review-guidelines")
    assert panel.is_visible()
    text = panel.inner_text()
    assert "Full body" in text and "Plain white background" in text and "Distinctive" in text
    page.keyboard.press("g")
    assert not panel.is_visible()
    page.reload()  # seen this version: it stays closed, one key away
    page.wait_for_selector(".review-card")
    assert not panel.is_visible()
    page.keyboard.press("g")
    assert panel.is_visible()
    page.goto(f"{live_server.url}/review/hv2/")  # another stage: its own first visit
    assert page.locator("#review-guidelines").is_visible()
    assert "Justified transitions" in page.inner_text("#review-guidelines")
    # The comment box stays hidden until asked for (once the page has shown what waits: showing
    # a card, or nothing, closes the box).
    page.wait_for_selector("#review-stage .card")
    assert not page.locator(".comment-box").is_visible()
    page.keyboard.press("c")
    assert page.locator(".comment-box").is_visible()


def test_revise_works_until_the_item_is_decided(
    live_server: Any, browser: Any, experts: list[Any], user_password: str, decisions: Any
) -> None:
    item = review_item_open(stage="hv1", subject_id=920_001, subject_label="Revisable")
    page = login(browser, live_server.url, experts[0], user_password)
    page.goto(f"{live_server.url}/review/hv1/?undo_ms=300")
    page.wait_for_selector(".review-card")
    page.keyboard.press("a")
    page.wait_for_selector("#review-toast:has-text('Vote recorded')")
    page.click("#review-toast a:has-text('Change')")
    page.wait_for_url(f"**/review/items/{item.pk}/")
    assert page.inner_text("#my-vote") == "approve"
    page.click("[data-revise=reject]")
    page.wait_for_selector(".messages:has-text('Vote changed to reject')")
    assert page.inner_text("#my-vote") == "reject" and page.inner_text("#item-status") == "open"
    # A second expert agrees with the revised vote: decided, and final.
    vote_cast(item_id=item.pk, expert=experts[1], choice="reject", idempotency_key="rv1")
    page.reload()
    assert page.inner_text("#item-status") == "decided: reject"
    assert page.query_selector("#revise-form") is None
    assert "(final)" in page.inner_text("main")
    assert [d.choice for d in decisions] == ["reject"]


def test_audit_is_reached_from_the_review_home(
    live_server: Any, browser: Any, experts: list[Any], user_password: str, decisions: Any
) -> None:
    item = review_item_open(stage="audit", subject_id=930_001, subject_label="Audited frame")
    page = login(browser, live_server.url, experts[0], user_password)
    row = page.locator("tr[data-stage=audit]")
    assert "Audit" in row.inner_text() and row.locator(".mine").inner_text() == "1"
    assert page.query_selector("#start-hv1") is None  # no work there: no Start
    page.click("#start-audit")
    page.wait_for_url("**/review/audit/")
    page.wait_for_selector(f".review-card[data-item-id='{item.pk}']")
    assert page.inner_text("#review-remaining") == "1 left for you"
    page.keyboard.press("a")
    page.wait_for_selector("#review-toast:has-text('Vote recorded')", timeout=10_000)
    assert Vote.objects.get(item=item).choice == "approve"
