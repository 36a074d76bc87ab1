"""The production topology, proven as separate hosts on one machine.

Every process is started as the docs say (``python -m hilapp.processes NAME``) with the
documented production environment (``deploy/production.env.example``), DEBUG off, each in its
own working directory with its own ``HILAPP_VAR_DIR``: they share nothing but PostgreSQL, Redis
and an S3 bucket (moto). OpenAI and Gemini are the wire-format fakes; the roles use OpenAI,
Gemini and diffusers (the tiny CPU pipelines on the gpu worker).

The journey: characters → HV1 (REST) → stories → HV2 (REST) → frames → HV3 (REST), review pages
in Chromium with every image loaded, an export started from the admin page, its shards fetched
through their signed URLs and read back by ``webdataset``. Meanwhile, chaos: one worker of each
kind is killed with SIGKILL at a random moment and restarted, and Redis is restarted once. At
the end every unit rests exactly once, nothing is duplicated, and the ledger matches what the
fakes answered.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.model_fakes import ModelFakes
from tests.s3 import free_port
from tests.topology.cluster import Cluster, deployment_environment

# ORM calls of this test run beside Playwright's event loop (as in the other browser tests).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
WORKERS = ("worker-default", "worker-api", "worker-gpu")
# Each model answer in the frame phase takes this long: a frame's chain of calls (references,
# their judges, the frame, its judge) then outlasts the first strikes of the chaos.
FRAME_PHASE_LATENCY_S = 1.5
ROLES = {
    "HILAPP_ROLE_PLANNER": "openai:gpt-4o=1,gemini:gemini-2.5-pro=1",
    "HILAPP_ROLE_JUDGE": "gemini:gemini-2.5-pro=1,openai:gpt-4o=1",
    "HILAPP_ROLE_ARBITRATOR": "openai:gpt-4o=1,gemini:gemini-2.5-pro=1",
    "HILAPP_ROLE_CHARACTER_RENDERER": "diffusers:flux",
    # The tiny Qwen-Image-Edit loads only with a test-process patch (tiny_pipelines), so the
    # gpu worker here runs Flux; edits go to the API models.
    "HILAPP_ROLE_REFERENCE_EDITOR": "openai:gpt-image-1=1,gemini:gemini-2.5-flash-image=1",
    "HILAPP_ROLE_FRAME_SYNTHESIZER": "gemini:gemini-2.5-flash-image",
    "HILAPP_ROLE_LOCAL_EDITOR": "openai:gpt-image-1",
}


def restart_redis() -> None:
    """Stop the broker without saving (queued messages are lost) and start it again."""
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], timeout=30)
    time.sleep(1)
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
        timeout=30,
    )
    wait_until(
        lambda: (
            subprocess.run(
                ["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True
            ).stdout.strip()
            == b"PONG"
        ),
        timeout=30,
        message="Redis to answer again",
    )


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.base}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = response.read()
            return json.loads(payload) if payload else None


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from tests.providers.tiny_pipelines import build_tiny_flux

    return {"DIFFUSERS_FLUX_PATH": str(build_tiny_flux(tmp_path_factory.mktemp("flux")))}


@pytest.fixture
def cluster(
    transactional_db: Any, tmp_path: Path, local_s3: Any, pipelines: dict[str, str]
) -> Iterator[tuple[Cluster, ModelFakes, str]]:
    # Each answer takes 0.3 s (FRAME_PHASE_LATENCY_S once frames run).
    fakes = ModelFakes(latency_s=0.3, iqcc_fail_every=4).start()
    port = free_port()
    bucket = local_s3.bucket()
    # The test process signs and reads what the processes write: the same bucket.
    assert bucket["AWS_STORAGE_BUCKET_NAME"]
    env = deployment_environment(bucket, fakes)
    env.update({**pipelines, **ROLES})
    env.update(
        CSRF_TRUSTED_ORIGINS=f"http://127.0.0.1:{port}",
        HILAPP_HTTPS="0",  # plain HTTP on loopback; check --deploy covers the HTTPS settings
        HILAPP_PROXY_SSL_HEADER="0",
        SECURE_HSTS_SECONDS="0",
        HILAPP_WEB_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="2",
        GUNICORN_THREADS="4",
        HILAPP_API_CONCURRENCY="16",
        HILAPP_GPU_CONCURRENCY="2",
        DIFFUSERS_STEPS="2",
        HILAPP_STORY_MIN_FRAMES="2",
        HILAPP_STORY_MAX_FRAMES="3",
        HILAPP_FRAME_MAX_ATTEMPTS="1",
        HILAPP_AUDIT_RATE="0",
    )
    nodes = Cluster(tmp_path, env)
    nodes.run("release", host="web")
    for name in ("web", *WORKERS, "beat"):
        nodes.start(name)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{base}/healthz"), timeout=90, message="gunicorn to answer")
    try:
        yield nodes, fakes, base
    finally:
        nodes.stop()
        fakes.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _vote_all(api: list[Api], stage: str, choice: str) -> int:
    """Each expert takes the next item of ``stage`` and votes until nothing waits for them."""
    votes = 0
    for expert in api:
        for _ in range(200):
            try:
                item = expert.call("GET", f"/api/v1/review/next/?stage={stage}")
            except urllib.error.HTTPError as exc:  # pragma: no cover - shown on failure
                raise AssertionError(exc.read()[:500]) from exc
            if not item:
                break
            expert.call(
                "POST",
                f"/api/v1/review/items/{item['id']}/votes/",
                {"choice": choice, "idempotency_key": f"{item['id']}-{expert.token[:6]}"},
            )
            votes += 1
    return votes


@pytest.mark.topology
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.worker
@pytest.mark.browser
@pytest.mark.gpu
def test_the_whole_journey_on_separate_hosts_survives_chaos(
    cluster: tuple[Cluster, ModelFakes, str], make_user: Any, browser: Any
) -> None:
    from hilapp.tokens import token_issue
    from review.models import ReviewItem
    from synthesis.models import Character, Frame, GateAttempt, ModelCall, StatusChange, Story
    from synthesis.states import CallStatus, FrameStatus, StoryStatus

    nodes, fakes, base = cluster
    admin = make_user("admin", "admin")
    experts = [make_user(f"expert{i}") for i in (1, 2, 3)]
    admin_api = Api(base, token_issue(admin))
    expert_api = [Api(base, token_issue(e)) for e in experts]

    try:
        # Phase I → HV1.
        admin_api.call("POST", "/api/v1/batches/", {"kind": "characters", "count": 4, "seed": 1})
        wait_until(
            lambda: ReviewItem.objects.filter(stage="hv1").count() == 4,
            timeout=300,
            message="4 templates to reach HV1",
        )
        _assert_pages_load(browser, base, "expert1", ["/review/hv1/"], with_images=True)
        _assert_pages_load(browser, base, "expert1", ["/", "/review/"])
        _vote_all(expert_api, "hv1", "approve")
        assert Character.objects.filter(status="locked").count() == 4

        # Phase II → HV2 → Phase III, with chaos while frames run.
        admin_api.call(
            "POST",
            "/api/v1/batches/",
            {"kind": "stories", "count": 3, "seed": 2, "params": {"max_cast": 2}},
        )
        wait_until(
            lambda: ReviewItem.objects.filter(stage="hv2").count() == 3,
            timeout=300,
            message="3 stories to reach HV2",
        )
        _assert_pages_load(browser, base, "expert1", ["/review/hv2/"], with_images=True)
        # Slower answers while frames run: on a quick machine, frames at 0.3 s per answer came to
        # rest within five seconds, before most of the chaos.
        fakes.latency_s = FRAME_PHASE_LATENCY_S
        _vote_all(expert_api, "hv2", "approve")
        frames_total = Frame.objects.count()
        assert frames_total >= 6

        rng = random.Random(7)
        chaos = [(rng.uniform(1, 15), name) for name in WORKERS] + [(rng.uniform(3, 12), "redis")]
        started = time.monotonic()
        struck_while_running = 0
        for at, what in sorted(chaos):
            time.sleep(max(0.0, started + at - time.monotonic()))
            struck_while_running += Frame.objects.filter(
                status__in=(FrameStatus.REFERENCES, FrameStatus.RENDERING)
            ).exists()
            if what == "redis":
                restart_redis()
            else:
                nodes.kill(what)
                nodes.start(what)

        def frames_rest() -> bool:
            open_ = Frame.objects.filter(
                status__in=(FrameStatus.REFERENCES, FrameStatus.RENDERING)
            ).exists()
            return not open_

        wait_until(frames_rest, timeout=600, message="every frame to leave the machine loop")
        assert struck_while_running >= 3, "the chaos came after the frames had finished"
        _assert_pages_load(browser, base, "expert2", ["/review/hv3/"], with_images=True)
        _vote_all(expert_api, "hv3", "discard")
        wait_until(
            lambda: not Story.objects.filter(status=StoryStatus.APPROVED).exists(),
            timeout=120,
            message="every story to complete",
        )

        # Export from the admin page; shards fetched through their signed URLs.
        shards = _export_from_admin_page(browser, base, admin_api)
        approved = Frame.objects.filter(status=FrameStatus.APPROVED).count()
        some_frame = Frame.objects.filter(status=FrameStatus.APPROVED).first()
        assert some_frame is not None
        admin_pages = [
            "/synthesis/batches/",
            "/synthesis/exports/",
            "/synthesis/statistics/",
            f"/synthesis/frames/{some_frame.pk}/provenance/",
        ]
        _assert_pages_load(browser, base, "admin", admin_pages)
        _read_back(shards, approved, nodes.base)
    except AssertionError:
        print(nodes.logs())
        raise

    # Exactly once: one resting transition per unit, one passed attempt per resting gate.
    for model, resting in (
        ("character", ("locked",)),
        ("story", ("complete",)),
        ("frame", ("approved", "discarded")),
    ):
        per_unit: dict[int, int] = {}
        for object_id in StatusChange.objects.filter(model=model, new__in=resting).values_list(
            "object_id", flat=True
        ):
            per_unit[object_id] = per_unit.get(object_id, 0) + 1
        assert per_unit and set(per_unit.values()) == {1}, (model, per_unit)
    assert Frame.objects.filter(status__in=("approved", "discarded")).count() == frames_total
    passed = list(
        GateAttempt.objects.filter(status="passed").values_list(
            "kind", "character", "frame", "reference", "round"
        )
    )
    assert passed and len(passed) == len(set(passed))  # one passed attempt per subject and round

    # The ledger against the fakes: every answered request is on it, none paid twice. A worker
    # killed mid-call leaves its row started/abandoned although the fake may have answered.
    answered = fakes.stats()["answered"]
    for provider in ("openai", "gemini"):
        calls = ModelCall.objects.filter(provider=provider)
        ok = calls.filter(status=CallStatus.OK).count()
        cut = calls.filter(status__in=(CallStatus.STARTED, CallStatus.ABANDONED)).count()
        assert ok <= answered.get(provider, 0) <= ok + cut, (provider, ok, cut, answered)
    assert ModelCall.objects.filter(provider="diffusers", status=CallStatus.OK).exists()


def _session_page(browser: Any, base: str, username: str) -> Any:
    """A page logged in as ``username`` through a session in the shared database (the web
    process uses the production password hasher, the tests a fast one)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    context = browser.new_context()
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}]
    )
    return context.new_page()


def _assert_pages_load(
    browser: Any, base: str, username: str, paths: list[str], *, with_images: bool = False
) -> None:
    """Each page answers 200, every image on it loads (from the bucket's presigned URLs) and
    its stylesheets apply (hashed static files from WhiteNoise, DEBUG off)."""
    page = _session_page(browser, base, username)
    try:
        for path in paths:
            response = page.goto(f"{base}{path}")
            assert response is not None and response.status == 200, (path, response)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(1000)  # the review page fetches its card after load
            broken = page.evaluate(
                "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
                ".map(i => i.src)"
            )
            assert broken == [], (path, broken)
            if with_images:
                assert page.evaluate("() => document.images.length") > 0, path
            rules = page.evaluate(
                "() => [...document.styleSheets].reduce((n, s) => n + s.cssRules.length, 0)"
            )
            assert rules > 0, f"{path} is unstyled"
    finally:
        page.close()


def _export_from_admin_page(browser: Any, base: str, admin_api: Api) -> list[bytes]:
    page = _session_page(browser, base, "admin")
    try:
        page.goto(f"{base}/synthesis/exports/")
        page.click("#export")
        page.wait_for_load_state("networkidle")
    finally:
        page.close()
    jobs: list[dict[str, Any]] = []

    def finished() -> bool:
        jobs[:] = admin_api.call("GET", "/api/v1/exports/")["results"]
        return bool(jobs) and jobs[0]["status"] in ("done", "failed")

    wait_until(finished, timeout=300, message="the export to finish")
    assert jobs[0]["status"] == "done", jobs[0]
    job = admin_api.call("GET", f"/api/v1/exports/{jobs[0]['id']}/")
    shards = []
    for item in job["files"]:
        if item["name"].startswith("webdataset/") and "/frames-" in item["name"]:
            with urllib.request.urlopen(item["url"], timeout=60) as response:
                shards.append(response.read())
    assert shards, job
    return shards


def _read_back(shards: list[bytes], approved: int, folder: Path) -> None:
    """The downloaded frame shards are a WebDataset with one sample per approved frame."""
    import webdataset as wds

    paths = []
    for n, data in enumerate(shards):
        path = folder / f"shard-{n}.tar"
        path.write_bytes(data)
        paths.append(str(path))
    samples = list(wds.WebDataset(paths, shardshuffle=False))
    assert len(samples) == approved
    for sample in samples:
        assert json.loads(sample["json"])
        assert any(key.endswith("png") for key in sample)
