"""The Gemini adapter through the real ``google-genai`` SDK against a local server speaking the
Gemini API's wire format, via ``calls.call_text`` / ``calls.call_image`` as the pipeline does."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest

from synthesis.models import ModelCall
from synthesis.prompts import RenderedPrompt
from synthesis.providers import calls, registry
from synthesis.providers.base import ErrorKind, ImageRequest, ProviderError, Role, TextRequest
from synthesis.providers.routing import RouteEntry
from synthesis.schemas import IqccReport, ScoreAnswer
from synthesis.states import CallStatus
from tests.providers.fakes import FakeAPI, Reply, png

TEXT = RouteEntry("gemini", "gemini-2.5-pro")
IMAGE = RouteEntry("gemini", "gemini-2.5-flash-image")
PROMPT = RenderedPrompt(name="iqcc_check", version="v9", text="Check this frame.")
GOOD = json.dumps({"score": [9.0], "reasoning": "ok"})
USAGE = {"promptTokenCount": 900, "candidatesTokenCount": 60, "totalTokenCount": 960}
IMAGE_USAGE = {"promptTokenCount": 400, "candidatesTokenCount": 1290, "totalTokenCount": 1690}
TEXT_COST = ((Decimal("1.25") * 900 + Decimal("10.00") * 60) / 1_000_000).quantize(
    Decimal("0.000001")
)
IMAGE_COST = ((Decimal("0.30") * 400 + Decimal("30.00") * 1290) / 1_000_000).quantize(
    Decimal("0.000001")
)


@pytest.fixture
def gemini_api(fake_api: FakeAPI, settings: Any) -> FakeAPI:
    settings.GEMINI_API_KEY = "g-test"
    settings.GEMINI_BASE_URL = fake_api.url
    settings.PROVIDER_TIMEOUT_S = 5.0
    return fake_api


def answer(parts: list[dict[str, Any]], *, finish: str = "STOP", usage: Any = None) -> Reply:
    return Reply(
        200,
        {
            "candidates": [
                {"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}
            ],
            "usageMetadata": usage or USAGE,
            "modelVersion": "gemini-2.5-pro",
        },
    )


def text(content: str, **kwargs: Any) -> Reply:
    return answer([{"text": content}], **kwargs)


def image(data: bytes) -> Reply:
    encoded = base64.b64encode(data).decode()
    return answer([{"inlineData": {"mimeType": "image/png", "data": encoded}}], usage=IMAGE_USAGE)


def error(status: int, name: str, *, headers: dict[str, str] | None = None, **extra: Any) -> Reply:
    body = {"error": {"code": status, "message": f"{name} happened", "status": name, **extra}}
    return Reply(status, body, headers=headers or {})


def rows() -> list[ModelCall]:
    return list(ModelCall.objects.order_by("id"))


def ask(schema: Any = ScoreAnswer, images: tuple[bytes, ...] = ()) -> Any:
    request = TextRequest(role=Role.ARBITRATOR, prompt=PROMPT, schema=schema, images=images)
    return calls.call_text(request, calls.CallContext(), entry=TEXT)


def test_structured_json_with_images(gemini_api: FakeAPI, batch: Any) -> None:
    gemini_api.queue(text(GOOD))
    ctx = calls.CallContext.for_batch(batch, subject="frame:3")
    request = TextRequest(role=Role.JUDGE, prompt=PROMPT, schema=ScoreAnswer, images=(png(),))

    result, _ = calls.call_text(request, ctx, entry=TEXT)

    assert result.data.score == [9.0]  # type: ignore[attr-defined]
    sent = gemini_api.seen[0]
    assert sent.path.endswith("/models/gemini-2.5-pro:generateContent")
    assert sent.headers["x-goog-api-key"] == "g-test"
    body = sent.json()
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    schema = config.get("responseSchema") or config.get("responseJsonSchema")
    assert "score" in json.dumps(schema)
    parts = body["contents"][0]["parts"]
    assert parts[0]["text"] == PROMPT.text
    inline = parts[1]["inlineData"]
    assert inline.get("mimeType", inline.get("mime_type")) == "image/png"
    assert base64.b64decode(inline["data"]) == png()
    [row] = rows()
    assert (row.status, row.tokens_in, row.tokens_out, row.images_in) == ("ok", 900, 60, 1)
    assert row.cost_usd == TEXT_COST and row.batch_id == batch.pk


def test_nested_schema_is_sent(gemini_api: FakeAPI, db: Any) -> None:
    check = {"verdict": "pass", "reasons": []}
    report = {
        "identity_consistency": check,
        "control_accuracy": check,
        "semantic_alignment": check,
        "error_scope": "none",
        "edit_instruction": "",
    }
    gemini_api.queue(text(json.dumps(report)))
    result, _ = ask(IqccReport)
    assert isinstance(result.data, IqccReport)
    config = gemini_api.seen[0].json()["generationConfig"]
    schema = json.dumps(config.get("responseSchema") or config.get("responseJsonSchema"))
    assert "identity_consistency" in schema and "verdict" in schema


def test_image_generation_and_edit(gemini_api: FakeAPI, db: Any) -> None:
    frame = png(48, 32, (1, 2, 3))
    gemini_api.queue(image(frame), image(frame))

    made, _ = calls.call_image(
        ImageRequest(role=Role.FRAME_SYNTHESIZER, prompt=PROMPT, size=(1536, 1024)),
        calls.CallContext(),
        entry=IMAGE,
    )
    edited, _ = calls.call_image(
        ImageRequest(role=Role.FRAME_SYNTHESIZER, prompt=PROMPT, images=(png(), png(), png())),
        calls.CallContext(),
        entry=IMAGE,
    )

    assert made.image == frame and edited.image == frame
    gen, edit = (s.json() for s in gemini_api.seen)
    assert gen["generationConfig"]["responseModalities"] == ["IMAGE"]
    assert gen["generationConfig"]["imageConfig"]["aspectRatio"] == "3:2"
    assert len([p for p in edit["contents"][0]["parts"] if "inlineData" in p]) == 3
    for row in rows():
        assert (row.status, row.images_out, row.cost_usd) == ("ok", 1, IMAGE_COST)
    assert registry.image_model(IMAGE).max_input_images == 3


def test_more_than_three_images_is_refused_before_sending(gemini_api: FakeAPI, db: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        calls.call_image(
            ImageRequest(role=Role.FRAME_SYNTHESIZER, prompt=PROMPT, images=(png(),) * 4),
            calls.CallContext(),
            entry=IMAGE,
        )
    assert caught.value.kind == ErrorKind.BAD_REQUEST and "fit_inputs" in str(caught.value)
    assert gemini_api.seen == []


def test_429_retry_after_then_success(gemini_api: FakeAPI, db: Any) -> None:
    gemini_api.queue(error(429, "RESOURCE_EXHAUSTED", headers={"Retry-After": "1"}), text(GOOD))
    ask()
    first, second = gemini_api.seen
    assert second.at - first.at >= 0.95
    assert [(r.status, r.error_kind) for r in rows()] == [("failed", "rate_limit"), ("ok", "")]


def test_429_retry_info_in_body(gemini_api: FakeAPI, db: Any) -> None:
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.5s"}
    gemini_api.queue(error(429, "RESOURCE_EXHAUSTED", details=[retry_info]), text(GOOD))
    ask()
    first, second = gemini_api.seen
    assert second.at - first.at >= 0.45


def test_500_then_success(gemini_api: FakeAPI, db: Any) -> None:
    gemini_api.queue(error(500, "INTERNAL"), text(GOOD))
    ask()
    assert [r.error_kind for r in rows()] == ["server", ""]


def test_timeout(gemini_api: FakeAPI, db: Any, settings: Any) -> None:
    settings.PROVIDER_TIMEOUT_S = 0.3
    settings.HILAPP_TRANSIENT_RETRIES = 1
    gemini_api.queue(text(GOOD), text(GOOD))
    for reply in gemini_api.replies:
        reply.delay_s = 1.0
    with pytest.raises(ProviderError) as caught:
        ask()
    assert caught.value.kind == ErrorKind.TIMEOUT
    assert [(r.status, r.error_kind) for r in rows()] == [("failed", "timeout")] * 2


def test_malformed_json_then_valid(gemini_api: FakeAPI, db: Any) -> None:
    gemini_api.queue(text("{score: nine"), text(GOOD))
    result, _ = ask()
    assert result.data.score == [9.0]
    bad, ok = rows()
    assert (bad.error_kind, bad.tokens_in, bad.cost_usd) == ("malformed", 900, TEXT_COST)
    assert ok.status == CallStatus.OK


def test_prompt_blocked_is_content_policy(gemini_api: FakeAPI, db: Any) -> None:
    gemini_api.queue(
        Reply(200, {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": USAGE}),
        text(GOOD),
    )
    with pytest.raises(ProviderError) as caught:
        ask()
    assert caught.value.kind == ErrorKind.CONTENT_POLICY and caught.value.permanent
    assert "SAFETY" in str(caught.value)
    [row] = rows()
    assert row.error_kind == "content_policy" and row.tokens_in == 900


def test_finish_reason_safety_on_image(gemini_api: FakeAPI, db: Any) -> None:
    gemini_api.queue(answer([], finish="IMAGE_SAFETY"))
    with pytest.raises(ProviderError) as caught:
        calls.call_image(
            ImageRequest(role=Role.FRAME_SYNTHESIZER, prompt=PROMPT),
            calls.CallContext(),
            entry=IMAGE,
        )
    assert caught.value.kind == ErrorKind.CONTENT_POLICY
    assert len(gemini_api.seen) == 1


@pytest.mark.parametrize(
    ("status", "name", "kind"),
    [
        (400, "INVALID_ARGUMENT", ErrorKind.BAD_REQUEST),
        (403, "PERMISSION_DENIED", ErrorKind.AUTH),
        (404, "NOT_FOUND", ErrorKind.BAD_REQUEST),
    ],
)
def test_permanent_errors(
    gemini_api: FakeAPI, db: Any, status: int, name: str, kind: ErrorKind
) -> None:
    gemini_api.queue(error(status, name), text(GOOD))
    with pytest.raises(ProviderError) as caught:
        ask()
    assert caught.value.kind == kind and caught.value.permanent and len(rows()) == 1


def test_truncated_image(gemini_api: FakeAPI, db: Any, settings: Any) -> None:
    settings.HILAPP_PARSE_RETRIES = 0
    whole = png(64, 64)
    gemini_api.queue(image(whole[:-30]))
    with pytest.raises(ProviderError) as caught:
        calls.call_image(
            ImageRequest(role=Role.FRAME_SYNTHESIZER, prompt=PROMPT),
            calls.CallContext(),
            entry=IMAGE,
        )
    assert caught.value.kind == ErrorKind.MALFORMED
    [row] = rows()
    assert row.error_kind == "malformed" and row.cost_usd == IMAGE_COST
