"""Three experts decide an HV1 and an HV2 item in real Chromium, with the keyboard."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from review import handlers
from review.models import ReviewItem
from review.services import review_item_open

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

UNDO_MS = 400


@pytest.fixture
def subjects() -> dict[str, Any]:
    from synthesis.models import Batch, Character, Story, StoryCast
    from synthesis.states import BatchKind, CharacterStatus, StoryStatus

    batch = Batch.objects.create(kind=BatchKind.CHARACTERS, requested=1)
    character = Character.objects.create(
        batch=batch,
        index=0,
        cid="cid-heron-1",
        status=CharacterStatus.PENDING_HV1,
        subject_category="bird",
        subject_type="grey heron",
        profession_category="knowledge",
        profession="archivist",
        name="Hesper the Heron",
        visual_description="A tall grey heron in a green archivist's coat with brass glasses.",
        viescore_sc=8.0,
        viescore_pq=7.5,
        viescore_overall=7.75,
    )
    story_batch = Batch.objects.create(kind=BatchKind.STORIES, requested=1)
    story = Story.objects.create(
        batch=story_batch,
        index=0,
        status=StoryStatus.PENDING_HV2,
        genre="mystery",
        title="The Missing Scroll",
        script={
            "title": "The Missing Scroll",
            "frames": [
                {
                    "frame_text": "Hesper finds the archive door ajar at dawn.",
                    "characters": [
                        {
                            "cid": character.cid,
                            "pid": "pose.arms_crossed",
                            "eid": "expr.neutral",
                            "ctag": "comp.close_up",
                        }
                    ],
                }
            ],
        },
    )
    StoryCast.objects.create(story=story, character=character, order=0)
    return {"character": character, "story": story}


def login(browser: Any, base: str, user: Any, password: str) -> Any:
    page = browser.new_context().new_page()
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/review/")
    return page


def vote_with_key(page: Any, base: str, stage: str, expect: str, key: str) -> str:
    page.goto(f"{base}/review/{stage}/?undo_ms={UNDO_MS}")
    page.wait_for_selector(f".review-card:has-text('{expect}')")
    item_id = page.get_attribute(".review-card", "data-item-id")
    page.keyboard.press(key)
    page.wait_for_selector("#review-toast:has-text('Voted')")
    page.wait_for_selector("#review-toast:has-text('Vote recorded')", timeout=10_000)
    return str(item_id)


def test_three_experts_decide_hv1_and_hv2_with_the_keyboard(
    live_server: Any,
    browser: Any,
    experts: list[Any],
    subjects: dict[str, Any],
    user_password: str,
) -> None:
    character, story = subjects["character"], subjects["story"]
    hv1 = review_item_open(stage="hv1", subject_id=character.pk, subject_label=character.name)
    hv2 = review_item_open(stage="hv2", subject_id=story.pk, subject_label=story.title)
    saved = dict(handlers._decision_handlers)
    stories_applied: list[Any] = []
    if importlib.util.find_spec("synthesis.services.stories") is None:
        # Until synthesis ships story_apply_review, record the HV2 decision instead.
        handlers.register_decision_handler("hv2", stories_applied.append)
    base = live_server.url
    try:
        first, second, third = (login(browser, base, e, user_password) for e in experts[:3])

        # HV1: approve, reject, approve — the third expert breaks the tie.
        assert vote_with_key(first, base, "hv1", "Hesper the Heron", "a") == str(hv1.pk)
        second.goto(f"{base}/review/hv1/?undo_ms={UNDO_MS}")
        second.wait_for_selector(".review-card:has-text('grey heron')")
        body = second.content()
        assert experts[0].username not in body and "vote-list" not in body
        second.goto(f"{base}/review/items/{hv1.pk}/")
        assert second.inner_text("#item-status") == "open"
        assert "vote-list" not in second.content() and experts[0].username not in second.content()
        assert vote_with_key(second, base, "hv1", "Hesper the Heron", "r") == str(hv1.pk)
        hv1.refresh_from_db()
        assert hv1.status == "open"
        assert vote_with_key(third, base, "hv1", "Hesper the Heron", "a") == str(hv1.pk)
        third.wait_for_selector("#review-toast:has-text('decided: approve')")
        hv1.refresh_from_db()
        assert hv1.status == "decided" and hv1.decided_choice == "approve"

        # The decided character shows as locked.
        character.refresh_from_db()
        assert character.status == "locked"
        third.goto(f"{base}/review/items/{hv1.pk}/")
        assert third.inner_text("#item-status") == "decided: approve"
        assert "Locked" in third.inner_text(".character-status")

        # HV2: the storyboard shows readable control chips; two approvals decide.
        first.goto(f"{base}/review/hv2/?undo_ms={UNDO_MS}")
        first.wait_for_selector(".storyboard-frame:has-text('archive door ajar')")
        assert "pose.arms_crossed — standing upright, both arms folded" in first.inner_text(
            ".storyboard"
        )
        assert vote_with_key(first, base, "hv2", "The Missing Scroll", "a") == str(hv2.pk)
        assert vote_with_key(second, base, "hv2", "The Missing Scroll", "a") == str(hv2.pk)
        second.wait_for_selector("#review-toast:has-text('decided: approve')")
        hv2.refresh_from_db()
        assert hv2.status == "decided" and hv2.decided_choice == "approve"
        if stories_applied:
            assert [d.subject_id for d in stories_applied] == [story.pk]
        else:
            story.refresh_from_db()
            assert story.status == "approved"
        assert ReviewItem.objects.filter(status="open").count() == 0
    finally:
        handlers._decision_handlers.clear()
        handlers._decision_handlers.update(saved)


def test_undo_keeps_the_vote_from_being_sent(
    live_server: Any, browser: Any, experts: list[Any], user_password: str
) -> None:
    item = review_item_open(stage="hv1", subject_id=424242, subject_label="Undo me")
    page = login(browser, live_server.url, experts[0], user_password)
    page.goto(f"{live_server.url}/review/hv1/?undo_ms=3000")
    page.wait_for_selector(".review-card:has-text('Undo me')")
    page.keyboard.press("?")
    assert page.is_visible("#review-help")
    page.keyboard.press("?")
    page.keyboard.press("r")
    page.wait_for_selector("#review-toast:has-text('Voted reject')")
    page.wait_for_selector(".empty")  # the next (empty) screen shows at once
    page.keyboard.press("u")
    page.wait_for_selector(".review-card:has-text('Undo me')")
    page.wait_for_timeout(3500)
    item.refresh_from_db()
    assert item.votes_count == 0
