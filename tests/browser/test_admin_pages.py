"""Admins in real Chromium: launch a character batch, watch it reach 100% through a real Celery
worker (the simulator), open the statistics page with every plot loaded; a bad parameter shows
an error and creates nothing; an expert gets 403; start a dataset export and watch it finish.

Screenshots of the pages go to ``$HILAPP_SCREENSHOTS`` (default: the test's tmp dir).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from synthesis.models import Batch, Character, ExportJob
from synthesis.plots import PLOTS
from synthesis.states import ExportStatus
from tests.export.conftest import media, simulated  # noqa: F401 - fixtures for the export test

# Playwright's sync API runs an event loop in the test thread; Django would refuse ORM calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("HILAPP_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def login(browser: Any, base: str, username: str) -> Any:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-pw")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def all_plots_loaded(page: Any) -> bool:
    return bool(
        page.evaluate(
            """() => { const imgs = [...document.querySelectorAll('img[data-plot]')];
                 return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""
        )
    )


def test_admin_launches_a_batch_watches_it_finish_and_opens_statistics(
    browser: Any, live_server: Any, celery_workers: Any, make_user: Any, shots: Path
) -> None:
    celery_workers.env["HILAPP_TEMPLATE_SIZE"] = "256"
    celery_workers.start(concurrency=2)
    make_user("root", role="admin")
    base = live_server.url
    page = login(browser, base, "root")

    page.goto(f"{base}/synthesis/batches/")
    page.select_option("select[name=kind]", "characters")
    page.fill("input[name=count]", "4")
    page.fill("input[name=seed]", "11")
    page.fill("input[name=budget_usd]", "5")
    page.check("input[name=subject_categories][value=mammal]")
    page.click("details summary")
    page.fill("input[name=sim_faults]", "low_viescore=0.25")
    page.screenshot(path=str(shots / "batches-form.png"), full_page=True)
    page.click("#launch")

    page.wait_for_selector("#batch-live")
    batch = Batch.objects.get()
    assert batch.requested == 4 and batch.params["subject_categories"] == ["mammal"]
    # Machine work ends; what remains waits for HV1 and is not counted as done.
    page.wait_for_function(
        "document.getElementById('progress-machine').textContent.trim() === '0'",
        timeout=180_000,
    )
    done = int(page.inner_text("#progress-count").split(" of ")[0])
    waiting = int(page.inner_text("#progress-humans"))
    assert page.inner_text("#progress-count").endswith("of 4") and done + waiting == 4
    assert Character.objects.filter(batch=batch, status__in=["drafting", "rendering"]).count() == 0
    page.screenshot(path=str(shots / "batch-detail.png"), full_page=True)

    page.goto(f"{base}/synthesis/batches/")
    assert page.locator(f"tr[data-batch='{batch.pk}']").count() == 1
    page.screenshot(path=str(shots / "batches.png"), full_page=True)

    page.goto(f"{base}/synthesis/statistics/")
    assert page.locator("img[data-plot]").count() == len(PLOTS)
    page.wait_for_function(
        """() => [...document.querySelectorAll('img[data-plot]')]
                 .every(i => i.complete && i.naturalWidth > 0)""",
        timeout=60_000,
    )
    assert all_plots_loaded(page)
    page.screenshot(path=str(shots / "statistics.png"), full_page=True)


def test_a_bad_parameter_shows_an_error_and_creates_nothing(
    browser: Any, live_server: Any, make_user: Any
) -> None:
    make_user("root", role="admin")
    base = live_server.url
    page = login(browser, base, "root")
    page.goto(f"{base}/synthesis/batches/")
    page.fill("input[name=count]", "0")
    page.click("#launch")
    error = page.wait_for_selector("#launch-error")
    assert "count must be between 1 and" in error.inner_text()
    page.fill("input[name=count]", "3")
    page.click("details summary")
    page.fill("input[name=sim_faults]", "gremlins=0.5")
    page.click("#launch")
    assert "gremlins" in page.wait_for_selector("#launch-error").inner_text()
    assert not Batch.objects.exists() and not Character.objects.exists()


def test_an_expert_gets_403_on_the_batches_page(
    browser: Any, live_server: Any, make_user: Any
) -> None:
    make_user("vera", role="expert")
    base = live_server.url
    page = login(browser, base, "vera")
    response = page.goto(f"{base}/synthesis/batches/")
    assert response is not None and response.status == 403
    response = page.goto(f"{base}/synthesis/statistics/")
    assert response is not None and response.status == 403


@pytest.mark.usefixtures("simulated")  # approved frames in complete stories
def test_admin_starts_an_export_and_watches_it_finish(
    browser: Any,
    live_server: Any,
    settings: Any,
    tmp_path: Path,
    celery_workers: Any,
    make_user: Any,
    shots: Path,
) -> None:
    settings.HILAPP_EXPORT_DIR = str(tmp_path / "exports")
    celery_workers.start(concurrency=1)
    make_user("root", role="admin")
    base = live_server.url
    page = login(browser, base, "root")

    page.click("nav >> text=Exports")
    page.uncheck("input[name=formats][value=omnigen2]")
    page.fill("input[name=holdout_characters]", "four")
    page.click("#export")
    assert "holdout_characters must be an integer" in page.inner_text("#export-error")
    assert not ExportJob.objects.exists()

    page.fill("input[name=holdout_characters]", "4")
    page.fill("input[name=holdout_stories]", "4")
    page.screenshot(path=str(shots / "exports-form.png"), full_page=True)
    page.click("#export")
    row = page.wait_for_selector("tr[data-export]")
    job = ExportJob.objects.get()
    assert row.get_attribute("data-export") == str(job.pk)
    # The page polls the job and reloads when it is done, with a link to its manifest.
    link = page.wait_for_selector(f"tr[data-export='{job.pk}'] a:text('manifest')", timeout=120_000)
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE, job.error
    assert page.inner_text(f"tr[data-export='{job.pk}'] [data-field=count]") == (
        f"{job.done}/{job.total}"
    )
    page.screenshot(path=str(shots / "exports-done.png"), full_page=True)
    manifest = page.request.get(base + link.get_attribute("href"))
    assert manifest.ok and manifest.json()["counts"]["stories_heldout"] == 4
    assert sorted(p.name for p in Path(job.out_dir).iterdir()) == [
        "README.md",
        "card",
        "index.parquet",
        "manifest.json",
        "webdataset",
    ]
