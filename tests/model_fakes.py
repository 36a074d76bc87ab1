"""Wire-format fakes of OpenAI and Gemini that answer every request the pipeline sends.

One local HTTP server speaks both APIs, as the official SDKs call them:

- OpenAI: ``POST /v1/chat/completions`` (JSON-schema output), ``POST /v1/images/generations``
  and ``POST /v1/images/edits`` (base64 PNG);
- Gemini: ``POST /v1beta/models/{model}:generateContent`` (or ``/v1/``, as the SDK release
  sends; JSON output through ``responseSchema`` or ``responseJsonSchema``; an image through
  ``responseModalities``).

Structured answers are recognised by the schema's properties and answered with a valid,
passing answer (a story script uses the CIDs and vocabulary IDs listed in its prompt). Images
are one pre-encoded PNG per size with a per-request text chunk, so every image is distinct
without encoding one per request. Each request waits ``latency_s`` first, like a real model.

The server counts what it answered per provider and the requests in flight (``GET /_stats``),
so tests and benchmarks in other processes can compare the ledger with what was served.

    python -m tests.model_fakes --port 8765 --latency-ms 2000
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import struct
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

GEMINI_PATH = re.compile(r"^/v1(beta)?/models/(?P<model>[^/:]+):generateContent$")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _base_png(side: int) -> bytes:
    # A plain white square with a grey figure: compresses well, like the simulator's images.
    image = Image.new("RGB", (side, side), "white")
    figure = Image.new("RGB", (side // 3, side // 2), (90, 90, 110))
    image.paste(figure, (side // 3, side // 4))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def unique_png(base: bytes, tag: str) -> bytes:
    """``base`` with a tEXt chunk after IHDR: new bytes (and hash), same pixels."""
    ihdr_end = 8 + 25
    return base[:ihdr_end] + _png_chunk(b"tEXt", b"fake\x00" + tag.encode()) + base[ihdr_end:]


def _properties(schema: Any) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    props = schema.get("properties")
    if isinstance(props, dict):
        return set(props)
    return set()


def _story_script(prompt: str) -> dict[str, Any]:
    cids = list(dict.fromkeys(re.findall(r"\bC\d+-\d{5}\b", prompt)))
    poses = re.findall(r"\bpose\.[a-z_]+", prompt)
    expressions = re.findall(r"\bexpr\.[a-z_]+", prompt)
    compositions = re.findall(r"\bcomp\.[a-z_]+", prompt)
    low = re.search(r"between (\d+) and (\d+) frames", prompt)
    count = int(low.group(1)) if low else 7
    frames = []
    for i in range(count):
        frames.append(
            {
                "frame_text": f"Frame {i + 1}: the friends go on together.",
                "characters": [
                    {
                        "cid": cid,
                        "pid": poses[(i + j) % len(poses)] if poses else "pose.standing",
                        "eid": expressions[i % len(expressions)] if expressions else "expr.happy",
                        "ctag": compositions[i % len(compositions)] if compositions else "",
                    }
                    for j, cid in enumerate(cids)
                ],
            }
        )
    return {"title": "A fake story", "frames": frames}


def structured_answer(
    properties: set[str], prompt: str, n: int, *, fail_iqcc: bool = False
) -> dict[str, Any]:
    """A valid answer for the pipeline schema with these top-level properties: passing,
    except an IQCC check when ``fail_iqcc`` (a global identity error)."""
    if {"name", "visual_description", "palette"} <= properties:
        return {
            "name": f"Fake {n}",
            "visual_description": "A small round figure in a long coat, full body, plain white.",
            "personality": "curious",
            "palette": ["#aa3322", "#2255aa", "#ddcc44"],
        }
    if "score" in properties:
        return {"score": [8.5], "reasoning": "clear and faithful"}
    if {"diagnostic", "rewritten_prompt"} <= properties:
        return {"diagnostic": "the pose was unclear", "rewritten_prompt": prompt[:400] or "again"}
    if "identity_consistency" in properties:
        ok = {"verdict": "pass", "reasons": []}
        if fail_iqcc:
            bad = {"verdict": "fail", "reasons": ["the face does not match the CID"]}
            return {
                "identity_consistency": bad,
                "control_accuracy": ok,
                "semantic_alignment": ok,
                "error_scope": "global",
                "edit_instruction": "",
            }
        return {
            "identity_consistency": ok,
            "control_accuracy": ok,
            "semantic_alignment": ok,
            "error_scope": "none",
            "edit_instruction": "",
        }
    if {"title", "frames"} <= properties:
        return _story_script(prompt)
    raise ValueError(f"no fake answer for a schema with properties {sorted(properties)}")


class _Server(ThreadingHTTPServer):
    # A provider's endpoint accepts hundreds of new connections at once; the standard library's
    # listen backlog of 5 made the kernel drop SYNs when an api worker opened its pools, and
    # each dropped SYN cost a call a one-second retransmit (``netstat -s``: "SYNs to LISTEN
    # sockets dropped").
    request_queue_size = 1024
    daemon_threads = True


class ModelFakes:
    """The fake server in a thread of this process (``start``/``close``)."""

    def __init__(self, *, latency_s: float = 0.0, port: int = 0, iqcc_fail_every: int = 0) -> None:
        self.latency_s = latency_s
        # Every n-th IQCC answer fails (0: none), so that frames reach HV3.
        self.iqcc_fail_every = iqcc_fail_every
        self._iqcc_count = 0
        self.answered: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._pngs: dict[int, bytes] = {}
        self._count = 0
        self.server = _Server(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """Point both SDKs at this server."""
        return {
            "OPENAI_API_KEY": "sk-fake",
            "OPENAI_BASE_URL": f"{self.url}/v1",
            "GEMINI_API_KEY": "fake",
            "GEMINI_BASE_URL": self.url,
        }

    def start(self) -> ModelFakes:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "answered": dict(self.answered),
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
            }

    def _png(self, side: int) -> bytes:
        with self._lock:
            self._count += 1
            n = self._count
            if side not in self._pngs:
                self._pngs[side] = _base_png(side)
            base = self._pngs[side]
        return unique_png(base, f"{n}-{time.time_ns()}")

    def _next(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def _structured(self, properties: set[str], prompt: str) -> dict[str, Any]:
        fail = False
        if "identity_consistency" in properties and self.iqcc_fail_every:
            with self._lock:
                self._iqcc_count += 1
                fail = self._iqcc_count % self.iqcc_fail_every == 0
        return structured_answer(properties, prompt, self._next(), fail_iqcc=fail)

    def _answer(self, path: str, body: bytes, content_type: str) -> tuple[str, dict[str, Any]]:
        """(provider, JSON reply) for one request."""
        if path == "/v1/chat/completions":
            request = json.loads(body)
            fmt = request.get("response_format", {}).get("json_schema", {})
            prompt = _openai_prompt(request)
            data = self._structured(_properties(fmt.get("schema")), prompt)
            return "openai", {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", "gpt-4o"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": json.dumps(data)},
                    }
                ],
                "usage": {"prompt_tokens": 500, "completion_tokens": 120, "total_tokens": 620},
            }
        if path in ("/v1/images/generations", "/v1/images/edits"):
            size = 1024
            if content_type.startswith("application/json"):
                width = str(json.loads(body).get("size", "1024x1024")).split("x")[0]
                size = int(width) if width.isdigit() else 1024
            b64 = base64.b64encode(self._png(size)).decode()
            return "openai", {
                "created": int(time.time()),
                "data": [{"b64_json": b64}],
                "usage": {"input_tokens": 50, "output_tokens": 4000, "total_tokens": 4050},
            }
        match = GEMINI_PATH.match(path)
        if match:
            request = json.loads(body)
            config = request.get("generationConfig") or {}
            usage = {"promptTokenCount": 500, "candidatesTokenCount": 120, "totalTokenCount": 620}
            if "IMAGE" in (config.get("responseModalities") or []):
                b64 = base64.b64encode(self._png(1024)).decode()
                part: dict[str, Any] = {"inlineData": {"mimeType": "image/png", "data": b64}}
            else:
                schema = config.get("responseJsonSchema") or config.get("responseSchema")
                prompt = _gemini_prompt(request)
                data = self._structured(_properties(schema), prompt)
                part = {"text": json.dumps(data)}
            return "gemini", {
                "candidates": [
                    {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}
                ],
                "usageMetadata": usage,
                "modelVersion": match.group("model"),
            }
        raise LookupError(path)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fakes = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/_stats":
                    self._reply(200, fakes.stats())
                else:
                    self._reply(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                with fakes._lock:
                    fakes.in_flight += 1
                    fakes.peak_in_flight = max(fakes.peak_in_flight, fakes.in_flight)
                try:
                    if fakes.latency_s:
                        time.sleep(fakes.latency_s)
                    try:
                        provider, payload = fakes._answer(
                            path, body, self.headers.get("Content-Type", "")
                        )
                    except LookupError:
                        self._reply(404, {"error": {"message": f"no route {path}"}})
                        return
                    except ValueError as exc:
                        self._reply(400, {"error": {"message": str(exc), "code": 400}})
                        return
                    self._reply(200, payload)
                    with fakes._lock:
                        fakes.answered[provider] += 1
                finally:
                    with fakes._lock:
                        fakes.in_flight -= 1

        return Handler


def _openai_prompt(request: dict[str, Any]) -> str:
    texts = []
    for message in request.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
    return "\n".join(texts)


def _gemini_prompt(request: dict[str, Any]) -> str:
    return "\n".join(
        str(part.get("text", ""))
        for content in request.get("contents", [])
        for part in content.get("parts", [])
        if isinstance(part, dict) and "text" in part
    )


def stats_of(url: str) -> dict[str, Any]:
    """The counters of a fake server running in another process."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/_stats", timeout=5) as response:
        return dict(json.loads(response.read()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    fakes = ModelFakes(latency_s=args.latency_ms / 1000, port=args.port)
    print(f"model fakes on {fakes.url} (latency {args.latency_ms:.0f} ms)", flush=True)
    fakes.server.serve_forever()


if __name__ == "__main__":
    main()
