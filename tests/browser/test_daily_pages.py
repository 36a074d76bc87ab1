"""The admins' and experts' daily pages in real Chromium: the story gallery and storybook of a
finished story, export downloads from the browser (local storage), no sideways scrolling at
390 px on the HV1/HV2/HV3 pages and the storybook, every button at AA contrast (computed from
the computed styles), the styled 404 page, and keyboard zoom and pan on HV1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from review.services import review_item_open
from synthesis.artifacts import save_png
from synthesis.export.jobs import export_job_run, export_job_start
from synthesis.models import Character, ExportJob, Frame, Story
from synthesis.states import (
    ApprovalPath,
    CharacterStatus,
    ExportStatus,
    FrameStatus,
    StoryStatus,
)
from tests.factories import (
    CharacterFactory,
    FrameCharacterFactory,
    StoryFactory,
    make_frame,
    png_bytes,
)

# Playwright's sync API runs an event loop in the test thread; Django would refuse ORM calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
BIG = 1600  # a template larger than the viewport, so that 1:1 must pan

CONTRAST = (Path(__file__).parent / "contrast.js").read_text()
NO_SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def open_page(browser: Any, base: str, username: str, viewport: dict[str, int] = DESKTOP) -> Any:
    page = browser.new_context(viewport=viewport).new_page()
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-pw")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


@pytest.fixture
def finished_story(db: Any) -> Story:
    """A complete mystery with two characters: 3 frames, one of them corrected in HV3."""
    cast = [CharacterFactory(name="Mira Quill"), CharacterFactory(name="Odo Fen")]
    story = StoryFactory(
        title="The Lantern Keepers", genre="mystery", cast_of=cast, completed_at=timezone.now()
    )
    make_frame(story, 0, cast, frame_text="Mira finds a lantern that hums.")
    make_frame(story, 1, cast[:1], frame_text="She follows its light into the archive.")
    make_frame(
        story, 2, cast, frame_text="Odo fixes the lantern.", approval_path=ApprovalPath.HV3_UPLOAD
    )
    other = StoryFactory(title="Soup for Everyone", genre="comedy", cast_of=[CharacterFactory()])
    make_frame(other, 0, list(other.characters.all()))
    return story


def test_gallery_filters_and_storybook_renders_a_finished_story(
    browser: Any, live_server: Any, make_user: Any, finished_story: Story
) -> None:
    make_user("root", role="admin")
    page = open_page(browser, live_server.url, "root")
    page.goto(f"{live_server.url}/synthesis/stories/")
    assert page.locator(".story-card").count() == 2
    page.select_option("select[name=genre]", "mystery")
    page.fill("input[name=character]", "odo")
    page.select_option("select[name=approval_path]", "hv3_upload")
    page.select_option("select[name=cast_size]", "2")
    page.click("#gallery-filter button[type=submit]")
    cards = page.locator(".story-card")
    assert cards.count() == 1 and "The Lantern Keepers" in cards.inner_text()
    assert page.evaluate("document.querySelector('.story-card img.cover').naturalWidth") > 0
    page.select_option("select[name=cast_size]", "1")
    page.click("#gallery-filter button[type=submit]")
    assert page.inner_text("#gallery-empty") == "No finished story matches."
    # A bad filter value says which field, and shows nothing.
    response = page.goto(f"{live_server.url}/synthesis/stories/?cast_size=9")
    assert response.status == 400 and "Cast size" in page.inner_text("#gallery-error")

    page.goto(f"{live_server.url}/synthesis/stories/")
    page.click(".story-card:has-text('The Lantern Keepers') a.story-link")
    page.wait_for_selector("#storybook")
    assert page.inner_text("#story-title") == "The Lantern Keepers"
    frames = page.locator("#story-frames > li")
    assert frames.count() == 3
    assert [frames.nth(i).locator(".frame-text").inner_text() for i in range(3)] == [
        "Mira finds a lantern that hums.",
        "She follows its light into the archive.",
        "Odo fixes the lantern.",
    ]
    cast_text = page.inner_text("#story-cast")
    for character in finished_story.characters.all():
        assert character.name in cast_text and character.cid in cast_text
    assert "IQCC gate" in frames.nth(0).inner_text()
    assert "HV3 manual correction" in frames.nth(2).inner_text()
    assert frames.nth(1).locator(".frame-cast tbody tr").count() == 1
    assert page.evaluate(
        "[...document.querySelectorAll('#story-frames img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    # Each frame links its provenance.
    frames.nth(2).locator("a.provenance-link").click()
    page.wait_for_selector("#frame-image")
    assert "Frame 3 of story" in page.inner_text("h1")


def test_a_finished_export_downloads_from_the_exports_page(
    browser: Any, live_server: Any, make_user: Any, finished_story: Story, tmp_path: Path
) -> None:
    admin = make_user("root", role="admin")
    job = export_job_start(params={"formats": ["webdataset"]}, user=admin)
    export_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE

    page = open_page(browser, live_server.url, "root")
    page.goto(f"{live_server.url}/synthesis/exports/")
    links = page.locator(f"#downloads-{job.pk} a.download")
    names = [links.nth(i).get_attribute("data-path") for i in range(links.count())]
    assert names[0] == "manifest.json" and "README.md" in names
    assert any(n.startswith("webdataset/train/frames-") for n in names if n)
    assert "WebDataset shards" in page.inner_text(f"#downloads-{job.pk}")
    assert "OmniGen2" in page.inner_text("#formats-guide")
    for name in ("manifest.json", next(n for n in names if n and n.endswith(".tar"))):
        with page.expect_download() as info:
            page.click(f"#downloads-{job.pk} a.download[data-path='{name}']")
        saved = tmp_path / name.replace("/", "_")
        info.value.save_as(saved)
        assert saved.read_bytes() == (Path(job.out_dir) / name).read_bytes()


def review_subjects() -> dict[str, int]:
    """One open item per stage HV1, HV2, HV3 with real images (the HV1 template is 1600 px)."""
    template, _ = save_png(png_bytes("big-template", size=BIG), folder="templates")
    hero = CharacterFactory(
        name="Bartholomew Quillfeather-Lanternkeeper",
        status=CharacterStatus.PENDING_HV1,
        template=template,
        visual_description="A very long description " * 12,
    )
    cast = [CharacterFactory(name="Mira Quill"), CharacterFactory(name="Odo Fen")]
    script = {
        "title": "The Humming Lantern",
        "frames": [
            {
                "frame_text": f"Frame {n}: the lantern hums louder.",
                "characters": [
                    {
                        "cid": c.cid,
                        "pid": "pose.arms_crossed",
                        "eid": "expr.happy",
                        "ctag": "comp.close_up",
                    }
                    for c in cast[: 1 + n % 2]
                ],
            }
            for n in range(9)
        ],
    }
    story = StoryFactory(status=StoryStatus.PENDING_HV2, script=script, cast_of=cast)
    failed = StoryFactory(status=StoryStatus.APPROVED, cast_of=cast)
    attempt_image, _ = save_png(png_bytes("failed-attempt", size=800), folder="frames")
    frame = Frame.objects.create(
        image=attempt_image,
        story=failed,
        index=0,
        frame_text="Odo holds the lantern high.",
        status=FrameStatus.HARD_FAILED,
    )
    for slot, character in enumerate(cast):
        FrameCharacterFactory(frame=frame, character=character, slot=slot)
    return {
        "hv1": review_item_open(stage="hv1", subject_id=hero.pk).pk,
        "hv2": review_item_open(stage="hv2", subject_id=story.pk).pk,
        "hv3": review_item_open(stage="hv3", subject_id=frame.pk).pk,
    }


def wait_card(page: Any) -> None:
    page.wait_for_selector(".review-card")
    page.wait_for_function(
        "[...document.querySelectorAll('.review-card img')].every(i => i.complete)"
    )


def test_no_sideways_scrolling_at_390_px(
    browser: Any, live_server: Any, make_user: Any, finished_story: Story
) -> None:
    review_subjects()
    make_user("ex1")
    make_user("root", role="admin")
    page = open_page(browser, live_server.url, "ex1", PHONE)
    for stage in ("hv1", "hv2", "hv3"):
        page.goto(f"{live_server.url}/review/{stage}/")
        wait_card(page)
        assert page.evaluate(NO_SIDEWAYS) == 0, stage
        image = page.query_selector(".review-card img.zoomable")
        if image is not None:  # the main image uses the phone's width
            assert image.bounding_box()["width"] >= 300, stage
    admin = open_page(browser, live_server.url, "root", PHONE)
    for path in (
        f"/synthesis/stories/{finished_story.pk}/",
        "/synthesis/stories/",
        "/synthesis/audit/",
    ):
        admin.goto(live_server.url + path)
        assert admin.evaluate(NO_SIDEWAYS) == 0, path


def test_every_button_has_aa_contrast(
    browser: Any, live_server: Any, make_user: Any, finished_story: Story
) -> None:
    review_subjects()
    make_user("ex1")
    make_user("root", role="admin")
    done = finished_story.batch
    done.status = "done"
    done.save(update_fields=["status"])
    checked: list[tuple[str, str, float]] = []
    page = open_page(browser, live_server.url, "ex1")
    for stage in ("hv1", "hv3"):
        page.goto(f"{live_server.url}/review/{stage}/")
        wait_card(page)
        checked += [(stage, b["text"], b["ratio"]) for b in page.evaluate(CONTRAST)]
    page.goto(f"{live_server.url}/review/")
    checked += [("review home", b["text"], b["ratio"]) for b in page.evaluate(CONTRAST)]
    admin = open_page(browser, live_server.url, "root")
    for path in (
        "/synthesis/batches/",
        f"/synthesis/batches/{done.pk}/",
        "/synthesis/exports/",
        f"/synthesis/stories/{finished_story.pk}/",
        "/synthesis/nowhere/",
    ):
        admin.goto(live_server.url + path)
        checked += [(path, b["text"], b["ratio"]) for b in admin.evaluate(CONTRAST)]
    texts = {text for _, text, _ in checked}
    assert {"a Approve", "r Reject", "2 Full regeneration", "done"} <= texts, texts
    low = [c for c in checked if c[2] < 4.5]
    assert not low, low


def test_styled_404_for_a_logged_in_user_and_json_for_the_api(
    browser: Any, live_server: Any, make_user: Any
) -> None:
    make_user("ex1")
    page = open_page(browser, live_server.url, "ex1")
    response = page.goto(f"{live_server.url}/review/items/999999/")
    assert response.status == 404
    assert page.inner_text("#error-title") == "Page not found"
    assert "ex1" in page.inner_text(".topbar")  # the site's own frame, logged in
    assert (
        page.evaluate("getComputedStyle(document.querySelector('.error-page')).textAlign")
        == "center"
    )
    assert page.evaluate("document.querySelector('link[rel=icon]').href").endswith("favicon.svg")
    api = page.request.get(f"{live_server.url}/api/v1/no-such-thing/")
    assert api.status == 404 and api.headers["content-type"].startswith("application/json")
    assert api.json() == {"detail": "Page not found."}
    icon = page.request.get(f"{live_server.url}/favicon.ico")
    assert icon.status == 200 and "svg" in icon.headers["content-type"]


def test_hv1_zooms_to_one_to_one_and_pans_by_keyboard(
    browser: Any, live_server: Any, make_user: Any
) -> None:
    review_subjects()
    make_user("ex1")
    page = open_page(browser, live_server.url, "ex1")
    page.goto(f"{live_server.url}/review/hv1/")
    wait_card(page)
    image = ".review-card .zoom-frame img"
    fitted = page.locator(image).bounding_box()
    assert fitted["width"] < BIG and fitted["y"] + fitted["height"] <= DESKTOP["height"]
    page.focus(".review-card .zoom-frame")
    page.keyboard.press("Enter")
    assert page.locator(image).bounding_box()["width"] == BIG
    frame = ".review-card .zoom-frame"
    assert page.get_attribute(frame, "aria-pressed") == "true"
    left = page.eval_on_selector(frame, "f => f.scrollLeft")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    assert page.eval_on_selector(frame, "f => f.scrollLeft") == left + 60
    assert page.eval_on_selector(frame, "f => f.scrollTop") > 0
    page.keyboard.press("Escape")
    assert page.locator(image).bounding_box()["width"] == fitted["width"]
    # "z" from anywhere on the page (the voting keys stay where they are).
    page.focus("body")
    page.keyboard.press("z")
    assert page.locator(image).bounding_box()["width"] == BIG
    page.keyboard.press("z")
    assert page.locator(image).bounding_box()["width"] == fitted["width"]
    assert page.query_selector(".review-card") is not None  # no vote was cast
    assert Character.objects.filter(status=CharacterStatus.PENDING_HV1).count() == 1
    assert not ExportJob.objects.exists()
