"""A real HTTP server on 127.0.0.1 that speaks enough of two LLM wire protocols for the
official SDKs: Anthropic Messages (POST /v1/messages), OpenAI Chat Completions
(POST /v1/chat/completions) and OpenAI Embeddings (POST /v1/embeddings: a deterministic
hashed bag of words, so texts sharing words get close vectors).

Each test scripts what the server answers with a queue of scenarios (`ok`, `status`,
`slow`, `malformed`, `not_json`); when the queue is empty it answers `ok()`. Every request
it receives is recorded (method, path, headers, JSON body) so tests can check the key
header and the model id that reached the wire.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Scenario:
    kind: str  # "ok" | "status" | "malformed" | "not_json"
    payload: Any = None  # ok: the JSON answer (dict) or plain text (str)
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0  # seconds to wait before answering
    input_tokens: int = 11
    output_tokens: int = 7


def ok(payload: Any = None, *, input_tokens: int = 11, output_tokens: int = 7) -> Scenario:
    """A successful answer. A dict becomes a tool call (Anthropic, when tools were sent) or
    JSON message content (OpenAI); a str becomes plain text content."""
    return Scenario("ok", payload=payload, input_tokens=input_tokens, output_tokens=output_tokens)


def status(
    code: int, *, retry_after: float | str | None = None, message: str = "scripted error"
) -> Scenario:
    """An error answer with the vendor's error body and an optional retry-after header."""
    return Scenario(
        "status",
        payload=message,
        status=code,
        retry_after=None if retry_after is None else str(retry_after),
    )


def slow(seconds: float, then: Scenario | None = None) -> Scenario:
    """Wait `seconds` before answering with `then` (default ok())."""
    inner = then or ok()
    return Scenario(
        inner.kind,
        payload=inner.payload,
        status=inner.status,
        retry_after=inner.retry_after,
        delay=seconds,
        input_tokens=inner.input_tokens,
        output_tokens=inner.output_tokens,
    )


def malformed() -> Scenario:
    """HTTP 200 with a body that is not valid JSON."""
    return Scenario("malformed")


def not_json(text: str = "Sure! Here is my answer, in prose.") -> Scenario:
    """A well-formed answer whose content is prose, not the JSON that was asked for."""
    return Scenario("not_json", payload=text)


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any


@dataclass
class FakeLlmServer:
    host: str = "127.0.0.1"
    scenarios: deque[Scenario] = field(default_factory=deque)
    requests: list[ReceivedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting -------------------------------------------------------------------
    def script(self, *scenarios: Scenario) -> None:
        with self._lock:
            self.scenarios.extend(scenarios)

    def _next(self) -> Scenario:
        with self._lock:
            return self.scenarios.popleft() if self.scenarios else ok()

    def _record(self, req: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    # --- addresses -------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    @property
    def anthropic_base_url(self) -> str:
        return self.url  # the SDK appends /v1/messages

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"  # the SDK appends /chat/completions

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeLlmServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                server._record(
                    ReceivedRequest(
                        method="POST",
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                    )
                )
                scenario = server._next()
                if scenario.delay:
                    # An Event wait, not time.sleep, so stop() wakes sleeping handlers.
                    server._stopping.wait(scenario.delay)
                if self.path.rstrip("/").endswith("/v1/messages"):
                    code, headers, payload = _anthropic_answer(scenario, body)
                elif self.path.rstrip("/").endswith("/chat/completions"):
                    code, headers, payload = _openai_answer(scenario, body)
                elif self.path.rstrip("/").endswith("/embeddings"):
                    code, headers, payload = _embeddings_answer(scenario, body)
                else:
                    code, headers, payload = (
                        404,
                        {},
                        json.dumps({"error": f"no route {self.path}"}).encode(),
                    )
                try:
                    self.send_response(code)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): nothing to answer

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-llm",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _error_headers(scenario: Scenario) -> dict[str, str]:
    return {"retry-after": scenario.retry_after} if scenario.retry_after is not None else {}


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _anthropic_answer(scenario: Scenario, body: Any) -> tuple[int, dict[str, str], bytes]:
    if scenario.kind == "status":
        err_type = _ANTHROPIC_ERROR_TYPES.get(scenario.status, "api_error")
        payload = {"type": "error", "error": {"type": err_type, "message": scenario.payload}}
        return scenario.status, _error_headers(scenario), json.dumps(payload).encode()
    if scenario.kind == "malformed":
        return 200, {}, b'{"id": "msg_1", "type": "message", "content": [ {"type": "text"'
    body = body if isinstance(body, dict) else {}
    tools = body.get("tools") or []
    if scenario.kind == "ok" and isinstance(scenario.payload, dict) and tools:
        content = [
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": tools[0]["name"],
                "input": scenario.payload,
            }
        ]
        stop_reason = "tool_use"
    else:
        text = (
            scenario.payload
            if isinstance(scenario.payload, str)
            else json.dumps(scenario.payload or {"answer": "ok"})
        )
        content = [{"type": "text", "text": text}]
        stop_reason = "end_turn"
    payload = {
        "id": "msg_fake_1",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "unknown"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": scenario.input_tokens, "output_tokens": scenario.output_tokens},
    }
    return 200, {}, json.dumps(payload).encode()


def _openai_answer(scenario: Scenario, body: Any) -> tuple[int, dict[str, str], bytes]:
    if scenario.kind == "status":
        payload = {
            "error": {"message": scenario.payload, "type": "scripted", "code": scenario.status}
        }
        return scenario.status, _error_headers(scenario), json.dumps(payload).encode()
    if scenario.kind == "malformed":
        return 200, {}, b'{"id": "chatcmpl-1", "choices": [ {"message": '
    body = body if isinstance(body, dict) else {}
    if isinstance(scenario.payload, str):
        content = scenario.payload
    else:
        content = json.dumps(scenario.payload if scenario.payload is not None else {"answer": "ok"})
    payload = {
        "id": "chatcmpl-fake-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "unknown"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": scenario.input_tokens,
            "completion_tokens": scenario.output_tokens,
            "total_tokens": scenario.input_tokens + scenario.output_tokens,
        },
    }
    return 200, {}, json.dumps(payload).encode()


EMBEDDING_DIM = 32  # when the request asks for no `dimensions`


def fake_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """Each lower-cased word adds 1 to a dimension chosen by its hash; unit length."""
    vector = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.sha1(word.encode()).hexdigest(), 16) % dim] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _embeddings_answer(scenario: Scenario, body: Any) -> tuple[int, dict[str, str], bytes]:
    if scenario.kind in ("status", "malformed"):
        return _openai_answer(scenario, body)
    body = body if isinstance(body, dict) else {}
    texts = body.get("input") or []
    texts = [texts] if isinstance(texts, str) else texts
    dim = int(body.get("dimensions") or EMBEDDING_DIM)
    if isinstance(scenario.payload, list):  # scripted vectors, as they are
        vectors = scenario.payload
    else:
        vectors = [fake_embedding(str(t), dim) for t in texts]
    if body.get("encoding_format") == "base64":  # what the SDK asks for: little-endian float32
        encoded: list[Any] = [
            base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vectors
        ]
    else:
        encoded = vectors
    payload = {
        "object": "list",
        "model": body.get("model", "unknown"),
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(encoded)
        ],
        "usage": {"prompt_tokens": scenario.input_tokens, "total_tokens": scenario.input_tokens},
    }
    return 200, {}, json.dumps(payload).encode()
