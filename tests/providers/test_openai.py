"""The OpenAI adapter through the real ``openai`` SDK against a local server speaking its API.

Every test goes through ``calls.call_text`` / ``calls.call_image`` as the pipeline does, and
checks the retries, the ledger rows (one per try) and the error the pipeline sees.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from decimal import Decimal
from typing import Any

import pytest

from synthesis.models import ModelCall
from synthesis.prompts import RenderedPrompt
from synthesis.providers import calls
from synthesis.providers.base import ErrorKind, ImageRequest, ProviderError, Role, TextRequest
from synthesis.providers.routing import RouteEntry
from synthesis.schemas import ScoreAnswer
from synthesis.states import CallStatus
from tests.providers.fakes import FakeAPI, Reply, png

TEXT = RouteEntry("openai", "gpt-4o")
IMAGE = RouteEntry("openai", "gpt-image-1")
PROMPT = RenderedPrompt(name="judge_character", version="abc123", text="Score this image.")


@pytest.fixture
def openai_api(fake_api: FakeAPI, settings: Any) -> FakeAPI:
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = fake_api.url + "/v1"
    settings.PROVIDER_TIMEOUT_S = 5.0
    return fake_api


def chat(content: str | None, *, refusal: str | None = None, finish: str = "stop") -> Reply:
    return Reply(
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280},
        },
    )


def image_reply(data: bytes) -> Reply:
    return Reply(
        200,
        {
            "created": 1,
            "data": [{"b64_json": base64.b64encode(data).decode()}],
            "usage": {
                "input_tokens": 300,
                "output_tokens": 4160,
                "total_tokens": 4460,
                "input_tokens_details": {"text_tokens": 300, "image_tokens": 0},
            },
        },
    )


def error(status: int, code: str = "", headers: dict[str, str] | None = None) -> Reply:
    body = {"error": {"message": f"error {status}", "type": "x", "param": None, "code": code}}
    return Reply(status, body, headers=headers or {})


GOOD = json.dumps({"score": [8.0, 7.5], "reasoning": "clean"})
TEXT_COST = (Decimal("2.50") * 1200 + Decimal("10.00") * 80) / 1_000_000
IMAGE_COST = (Decimal("5.00") * 300 + Decimal("40.00") * 4160) / 1_000_000


def text_request(images: tuple[bytes, ...] = ()) -> TextRequest:
    return TextRequest(role=Role.JUDGE, prompt=PROMPT, schema=ScoreAnswer, images=images)


def rows() -> list[ModelCall]:
    return list(ModelCall.objects.order_by("id"))


def test_text_structured_output_with_images(openai_api: FakeAPI, batch: Any) -> None:
    openai_api.queue(chat(GOOD))
    ctx = calls.CallContext.for_batch(batch, subject="character:1")

    result, call = calls.call_text(text_request((png(), png(color=(0, 0, 255)))), ctx, entry=TEXT)

    assert isinstance(result.data, ScoreAnswer) and result.data.score == [8.0, 7.5]
    sent = openai_api.seen[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    body = sent.json()
    assert body["model"] == "gpt-4o"
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "ScoreAnswer"
    assert body["response_format"]["json_schema"]["strict"] is True
    parts = body["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": PROMPT.text}
    assert [p["image_url"]["url"][:22] for p in parts[1:]] == ["data:image/png;base64,"] * 2
    [row] = rows()
    assert row.pk == call.pk and row.status == CallStatus.OK
    assert (row.tokens_in, row.tokens_out, row.images_in) == (1200, 80, 2)
    assert row.cost_usd == TEXT_COST.quantize(Decimal("0.000001"))
    assert row.batch_id == batch.pk and row.prompt_version == "abc123"


def test_image_generate_and_edit_with_mask(openai_api: FakeAPI, db: Any) -> None:
    openai_api.queue(image_reply(png(64, 64)), image_reply(png(64, 64)))
    ctx = calls.CallContext()

    generated, _ = calls.call_image(
        ImageRequest(role=Role.FRAME_SYNTHESIZER, prompt=PROMPT, size=(1536, 1024)),
        ctx,
        entry=IMAGE,
    )
    edited, _ = calls.call_image(
        ImageRequest(
            role=Role.LOCAL_EDITOR,
            prompt=PROMPT,
            images=(png(), png(color=(0, 255, 0))),
            mask=png(),
        ),
        ctx,
        entry=IMAGE,
    )

    assert generated.image.startswith(b"\x89PNG") and edited.image.startswith(b"\x89PNG")
    gen, edit = openai_api.seen
    assert gen.path == "/v1/images/generations"
    assert gen.json()["size"] == "1536x1024" and gen.json()["model"] == "gpt-image-1"
    assert edit.path == "/v1/images/edits"
    assert edit.headers["content-type"].startswith("multipart/form-data")
    assert edit.body.count(b'name="image[]"') == 2 and b'name="mask"' in edit.body
    for row in rows():
        assert row.status == CallStatus.OK and row.images_out == 1
        assert row.cost_usd == IMAGE_COST.quantize(Decimal("0.000001"))
    assert rows()[1].images_in == 2


def test_429_honours_retry_after_then_succeeds(openai_api: FakeAPI, db: Any) -> None:
    openai_api.queue(error(429, "rate_limit_exceeded", {"Retry-After": "1"}), chat(GOOD))

    result, _ = calls.call_text(text_request(), calls.CallContext(), entry=TEXT)

    assert result.data.score == [8.0, 7.5]  # type: ignore[attr-defined]
    first, second = openai_api.seen
    assert second.at - first.at >= 0.95  # Retry-After: 1 honoured (base back-off is 0.01 s)
    failed, ok = rows()
    assert (failed.status, failed.error_kind, failed.try_number) == ("failed", "rate_limit", 0)
    assert failed.cost_usd == 0
    assert (ok.status, ok.try_number) == ("ok", 1)


def test_429_http_date_and_reset_headers(openai_api: FakeAPI, db: Any) -> None:
    from email.utils import formatdate

    openai_api.queue(
        error(429, headers={"Retry-After": formatdate(time.time() + 1, usegmt=True)}),
        error(429, headers={"x-ratelimit-reset-requests": "300ms"}),
        chat(GOOD),
    )
    started = time.monotonic()
    calls.call_text(text_request(), calls.CallContext(), entry=TEXT)
    assert time.monotonic() - started >= 0.3
    assert [r.error_kind for r in rows()] == ["rate_limit", "rate_limit", ""]


def test_500_then_success(openai_api: FakeAPI, db: Any) -> None:
    openai_api.queue(error(500), error(503), chat(GOOD))
    calls.call_text(text_request(), calls.CallContext(), entry=TEXT)
    assert [(r.status, r.error_kind) for r in rows()] == [
        ("failed", "server"),
        ("failed", "server"),
        ("ok", ""),
    ]


def test_timeout_is_retried_then_fails(openai_api: FakeAPI, db: Any, settings: Any) -> None:
    settings.PROVIDER_TIMEOUT_S = 0.3
    settings.HILAPP_TRANSIENT_RETRIES = 1
    openai_api.queue(chat(GOOD), chat(GOOD))
    openai_api.replies[0].delay_s = openai_api.replies[1].delay_s = 1.0

    with pytest.raises(ProviderError) as caught:
        calls.call_text(text_request(), calls.CallContext(), entry=TEXT)

    assert caught.value.kind == ErrorKind.TIMEOUT and not caught.value.permanent
    assert [(r.status, r.error_kind) for r in rows()] == [("failed", "timeout")] * 2


def test_connection_refused(openai_api: FakeAPI, db: Any, settings: Any) -> None:
    settings.HILAPP_TRANSIENT_RETRIES = 0
    openai_api.close()
    with pytest.raises(ProviderError) as caught:
        calls.call_text(text_request(), calls.CallContext(), entry=TEXT)
    assert caught.value.kind == ErrorKind.CONNECTION


def test_malformed_json_answer_is_asked_again_and_billed(
    openai_api: FakeAPI, db: Any, settings: Any
) -> None:
    settings.HILAPP_PARSE_RETRIES = 1
    openai_api.queue(chat('{"score": [8.0'), chat('{"score": "high"}'))

    with pytest.raises(ProviderError) as caught:
        calls.call_text(text_request(), calls.CallContext(), entry=TEXT)

    assert caught.value.kind == ErrorKind.MALFORMED
    failed = rows()
    assert [(r.status, r.error_kind) for r in failed] == [("failed", "malformed")] * 2
    for row in failed:  # the answers were produced, so they are billed by their real usage
        assert (row.tokens_in, row.tokens_out) == (1200, 80)
        assert row.cost_usd == TEXT_COST.quantize(Decimal("0.000001"))


def test_body_that_is_not_json(openai_api: FakeAPI, db: Any, settings: Any) -> None:
    settings.HILAPP_PARSE_RETRIES = 0
    openai_api.queue(Reply(200, b"{not json"))
    with pytest.raises(ProviderError) as caught:
        calls.call_text(text_request(), calls.CallContext(), entry=TEXT)
    assert caught.value.kind == ErrorKind.MALFORMED


def test_refusal_is_content_policy_and_not_retried(openai_api: FakeAPI, db: Any) -> None:
    openai_api.queue(chat(None, refusal="I can't help with that."), chat(GOOD))

    with pytest.raises(ProviderError) as caught:
        calls.call_text(text_request(), calls.CallContext(), entry=TEXT)

    assert caught.value.kind == ErrorKind.CONTENT_POLICY and caught.value.permanent
    assert "can't help" in str(caught.value)
    [row] = rows()
    assert (row.status, row.error_kind) == ("failed", "content_policy")
    assert len(openai_api.seen) == 1


def test_image_moderation_block_is_content_policy(openai_api: FakeAPI, db: Any) -> None:
    openai_api.queue(error(400, "moderation_blocked"))
    with pytest.raises(ProviderError) as caught:
        calls.call_image(
            ImageRequest(role=Role.FRAME_SYNTHESIZER, prompt=PROMPT),
            calls.CallContext(),
            entry=IMAGE,
        )
    assert caught.value.kind == ErrorKind.CONTENT_POLICY and caught.value.status == 400
    assert len(rows()) == 1


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ErrorKind.BAD_REQUEST),
        (404, ErrorKind.BAD_REQUEST),
        (422, ErrorKind.BAD_REQUEST),
        (401, ErrorKind.AUTH),
        (403, ErrorKind.AUTH),
    ],
)
def test_permanent_http_errors_fail_at_once(
    openai_api: FakeAPI, db: Any, status: int, kind: ErrorKind
) -> None:
    openai_api.queue(error(status), chat(GOOD))
    with pytest.raises(ProviderError) as caught:
        calls.call_text(text_request(), calls.CallContext(), entry=TEXT)
    assert caught.value.kind == kind and caught.value.permanent
    assert len(rows()) == 1 and len(openai_api.seen) == 1


def test_truncated_image_is_an_error_not_a_result(
    openai_api: FakeAPI, db: Any, settings: Any
) -> None:
    settings.HILAPP_PARSE_RETRIES = 1
    whole = png(64, 64, (10, 200, 90))
    openai_api.queue(image_reply(whole[: len(whole) // 2]), image_reply(whole))

    result, _ = calls.call_image(
        ImageRequest(role=Role.FRAME_SYNTHESIZER, prompt=PROMPT), calls.CallContext(), entry=IMAGE
    )

    assert result.image == whole
    bad, ok = rows()
    assert (bad.status, bad.error_kind) == ("failed", "malformed")
    assert "truncated" in bad.error
    assert bad.cost_usd == IMAGE_COST.quantize(Decimal("0.000001"))  # billed all the same
    assert ok.status == "ok"


def test_missing_key_fails_without_retry(db: Any, settings: Any) -> None:
    settings.OPENAI_API_KEY = ""
    with pytest.raises(ProviderError) as caught:
        calls.call_text(text_request(), calls.CallContext(), entry=TEXT)
    assert caught.value.kind == ErrorKind.UNAVAILABLE and caught.value.permanent
    assert "OPENAI_API_KEY" in str(caught.value)
    assert len(rows()) == 1


def test_the_sdk_http_client_logs_no_line_per_request(
    openai_api: FakeAPI, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # An api worker makes hundreds of calls a second: the HTTP client's INFO line per request
    # ("HTTP Request: POST …") is off (the ledger has every call); its warnings still show.
    openai_api.queue(chat(GOOD))
    with caplog.at_level("INFO"):
        calls.call_text(text_request(), calls.CallContext(), entry=TEXT)

    assert openai_api.seen, "the request reached the server"
    assert not [r for r in caplog.records if "HTTP Request" in r.getMessage()]
    assert logging.getLogger("httpx2").isEnabledFor(logging.WARNING)
