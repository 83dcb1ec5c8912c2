"""A real HTTP server on 127.0.0.1 that speaks enough of two LLM wire protocols for the
official SDKs: Anthropic Messages (POST /v1/messages), OpenAI Chat Completions
(POST /v1/chat/completions) and OpenAI Embeddings (POST /v1/embeddings: a deterministic
hashed bag of words, so texts sharing words get close vectors).

Each test scripts what the server answers with a queue of scenarios (`ok`, `status`,
`slow`, `malformed`, `not_json`, `tool_calls`, `cut`, `llama_cpp`); when the queue is
empty it answers `ok()`. Every request it receives is recorded (method, path, headers,
JSON body) so tests can check what reached the wire: the key header, the model id, tool
definitions, tool results sent back, cache hints.

A request with `"stream": true` is answered with server-sent events in the vendor's own
format (Anthropic: message_start, content_block_start/delta/stop, message_delta,
message_stop; OpenAI: chat.completion.chunk lines, a usage chunk when
stream_options.include_usage is set, then [DONE]), sent in chunked transfer encoding one
event per chunk, as the vendors do. Usage carries cached-token fields in each vendor's
shape: a scenario's `input_tokens` counts all input tokens, like swarm's Usage.

With `cache=PromptCache()` (tests/fakes/prompt_cache.py) the server counts the input
tokens of each request itself and applies the vendor's prompt-caching rules to them
instead of the scenario's numbers: what a call writes is stored when it finishes.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import re
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.prompt_cache import CacheRequestError, CacheUse, PromptCache


@dataclass(frozen=True)
class Scenario:
    kind: str  # "ok" | "status" | "malformed" | "not_json" | "tool_calls" | "cut" | "llama_cpp"
    payload: Any = None  # ok: the JSON answer (dict) or plain text (str)
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0  # seconds to wait before answering
    input_tokens: int = 11  # all input tokens, cached ones included
    output_tokens: int = 7
    cached_tokens: int = 0  # of input_tokens, read from the prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to it (Anthropic only)
    calls: tuple[tuple[str, dict[str, Any]], ...] = ()  # tool_calls: (name, arguments)
    cut_after: int = 2  # cut: content deltas sent before the cut
    cut_how: str = "drop"  # cut: "drop" (connection lost), "eof" (ends early), "error" event
    then: Scenario | None = None  # llama_cpp: the answer when json_schema was not asked
    tool: str | None = None  # ok, Anthropic: the answer tool a model would pick under "any"


def ok(
    payload: Any = None,
    *,
    input_tokens: int = 11,
    output_tokens: int = 7,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
    tool: str | None = None,
) -> Scenario:
    """A successful answer. A dict becomes a tool call (Anthropic, when tools were sent:
    the tool tool_choice names, else `tool` if sent, else the last one) or JSON message
    content (OpenAI); a str becomes plain text content."""
    return Scenario(
        "ok",
        payload=payload,
        tool=tool,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        cache_write_tokens=cache_write_tokens,
    )


def tool_calls(
    *calls: tuple[str, dict[str, Any]],
    text: str = "",
    input_tokens: int = 11,
    output_tokens: int = 7,
) -> Scenario:
    """An answer that ends in calls of the named tools (ids toolu_fake_N / call_fake_N),
    after `text` when given."""
    return Scenario(
        "tool_calls",
        payload=text,
        calls=tuple(calls),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


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
    return dataclasses.replace(then or ok(), delay=seconds)


def malformed() -> Scenario:
    """HTTP 200 with a body that is not valid JSON."""
    return Scenario("malformed")


def not_json(text: str = "Sure! Here is my answer, in prose.") -> Scenario:
    """A well-formed answer whose content is prose, not the JSON that was asked for."""
    return Scenario("not_json", payload=text)


def cut(
    text: str = "The answer starts well and then", *, after: int = 2, how: str = "drop"
) -> Scenario:
    """A stream that breaks after `after` text deltas: "drop" closes the connection in
    the middle of the chunked body, "eof" ends the body cleanly but before the final
    events (no message_stop / finish_reason), "error" sends the vendor's mid-stream error
    event (Anthropic overloaded_error, OpenAI an error object). A request that did not
    ask for a stream gets half a body and a closed connection."""
    if how not in ("drop", "eof", "error"):
        raise ValueError(f"cut how must be drop, eof or error, got {how!r}")
    return Scenario("cut", payload=text, cut_after=after, cut_how=how)


def llama_cpp(then: Scenario | None = None) -> Scenario:
    """llama.cpp's OpenAI-compatible server: `response_format` json_schema is answered
    with a 500 wrapping a validation error; anything else (json_object with a schema,
    no response_format) gets `then` (default ok())."""
    return Scenario("llama_cpp", then=then or ok())


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any


@dataclass
class _Answer:
    """What the handler writes: a whole body, or SSE events (then maybe a cut)."""

    code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    events: list[str] | None = None
    cut: str | None = None  # "drop": close mid-body instead of ending it


@dataclass
class FakeLlmServer:
    host: str = "127.0.0.1"
    scenarios: deque[Scenario] = field(default_factory=deque)
    requests: list[ReceivedRequest] = field(default_factory=list)
    # Answers when no scenario is queued: responder(path, body) -> Scenario (a scripted
    # model that reads the request, e.g. tests/fakes/diamond.py).
    responder: Callable[[str, dict[str, Any]], Scenario] | None = None
    # Count tokens and cache prompt prefixes as the vendors do (None: scripted numbers).
    cache: PromptCache | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting -------------------------------------------------------------------
    def script(self, *scenarios: Scenario) -> None:
        with self._lock:
            self.scenarios.extend(scenarios)

    def _next(self, path: str = "", body: Any = None) -> Scenario:
        with self._lock:
            if self.scenarios:
                return self.scenarios.popleft()
        if self.responder is not None:
            return self.responder(path, body if isinstance(body, dict) else {})
        return ok()

    def _record(self, req: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _cache_use(self, path: str, scenario: Scenario, body: dict[str, Any]) -> CacheUse | None:
        if self.cache is None or scenario.kind not in ("ok", "tool_calls", "not_json"):
            return None
        path = path.rstrip("/")
        if path.endswith("/v1/messages"):
            return self.cache.anthropic(body)
        if path.endswith("/chat/completions"):
            return self.cache.openai(body)
        return None

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
                scenario = server._next(self.path, body)
                body = body if isinstance(body, dict) else {}
                # The cache is looked up when the call arrives ...
                try:
                    use = server._cache_use(self.path, scenario, body)
                except CacheRequestError as exc:
                    use, scenario = None, status(400, message=str(exc))
                if use is not None:
                    scenario = dataclasses.replace(
                        scenario,
                        input_tokens=use.input_tokens,
                        cached_tokens=use.cached_tokens,
                        cache_write_tokens=use.cache_write_tokens,
                    )
                if scenario.delay:
                    # An Event wait, not time.sleep, so stop() wakes sleeping handlers.
                    server._stopping.wait(scenario.delay)
                if use is not None:
                    use.commit()  # ... and written when it has finished, not before
                if self.path.rstrip("/").endswith("/v1/messages"):
                    answer = _anthropic_answer(scenario, body)
                elif self.path.rstrip("/").endswith("/chat/completions"):
                    answer = _openai_answer(scenario, body)
                elif self.path.rstrip("/").endswith("/embeddings"):
                    answer = _embeddings_answer(scenario, body)
                else:
                    answer = _Answer(
                        404, body=json.dumps({"error": f"no route {self.path}"}).encode()
                    )
                try:
                    if answer.events is None:
                        self._send_whole(answer)
                    else:
                        self._send_events(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): nothing to answer

            def _send_whole(self, answer: _Answer) -> None:
                self.send_response(answer.code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer.body)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if answer.cut:
                    # Half the promised body, then the connection goes.
                    self.wfile.write(answer.body[: len(answer.body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(answer.body)

            def _send_events(self, answer: _Answer) -> None:
                self.send_response(answer.code)
                self.send_header("content-type", "text/event-stream; charset=utf-8")
                self.send_header("cache-control", "no-cache")
                self.send_header("transfer-encoding", "chunked")
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                for event in answer.events or []:
                    data = event.encode("utf-8")
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                if answer.cut == "drop":
                    self.close_connection = True  # no last chunk: an incomplete body
                    return
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self._httpd = _QuietServer((self.host, 0), Handler)
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


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (its timeout, a connection it kept alive and dropped) is
        # part of the scenarios, not a server error worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _error_headers(scenario: Scenario) -> dict[str, str]:
    return {"retry-after": scenario.retry_after} if scenario.retry_after is not None else {}


def _pieces(text: str) -> list[str]:
    """Word by word (spaces kept), so a stream has several deltas that join to `text`."""
    return re.findall(r"\s*\S+\s*$|\s*\S+", text) or ([text] if text else [])


def _thirds(text: str) -> list[str]:
    step = max(1, -(-len(text) // 3))
    return [text[i : i + step] for i in range(0, len(text), step)]


def _answer_text(payload: Any) -> str:
    if isinstance(payload, str):
        return payload
    return json.dumps(payload if payload is not None else {"answer": "ok"})


# --- Anthropic -------------------------------------------------------------------------
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _anthropic_usage(s: Scenario) -> dict[str, int]:
    # Anthropic counts cache reads and writes apart from input_tokens.
    return {
        "input_tokens": max(s.input_tokens - s.cached_tokens - s.cache_write_tokens, 0),
        "cache_creation_input_tokens": s.cache_write_tokens,
        "cache_read_input_tokens": s.cached_tokens,
        "output_tokens": s.output_tokens,
    }


def _anthropic_content(scenario: Scenario, body: dict[str, Any]) -> tuple[list[dict], str]:
    tools = body.get("tools") or []
    if scenario.kind == "tool_calls":
        content: list[dict] = (
            [{"type": "text", "text": scenario.payload}] if scenario.payload else []
        )
        for i, (name, arguments) in enumerate(scenario.calls, start=1):
            content.append(
                {"type": "tool_use", "id": f"toolu_fake_{i}", "name": name, "input": arguments}
            )
        return content, "tool_use"
    if scenario.kind == "ok" and isinstance(scenario.payload, dict) and tools:
        choice = body.get("tool_choice") or {}
        names = [t.get("name") for t in tools]
        if choice.get("type") == "tool":
            name = choice.get("name")
        else:  # "any": the one the prompt asks for, as a model would
            name = scenario.tool if scenario.tool in names else names[-1]
        return [
            {"type": "tool_use", "id": "toolu_1", "name": name, "input": scenario.payload}
        ], "tool_use"
    return [{"type": "text", "text": _answer_text(scenario.payload)}], "end_turn"


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _anthropic_answer(scenario: Scenario, body: dict[str, Any]) -> _Answer:
    if scenario.kind == "status":
        err_type = _ANTHROPIC_ERROR_TYPES.get(scenario.status, "api_error")
        payload = {"type": "error", "error": {"type": err_type, "message": scenario.payload}}
        return _Answer(scenario.status, _error_headers(scenario), json.dumps(payload).encode())
    if scenario.kind == "malformed":
        return _Answer(200, body=b'{"id": "msg_1", "type": "message", "content": [ {"type": "text"')
    if scenario.kind == "llama_cpp":
        return _anthropic_answer(scenario.then or ok(), body)
    content, stop_reason = _anthropic_content(scenario, body)
    message = {
        "id": "msg_fake_1",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "unknown"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _anthropic_usage(scenario),
    }
    if not body.get("stream"):
        return _Answer(
            200, body=json.dumps(message).encode(), cut="drop" if scenario.kind == "cut" else None
        )

    start_usage = {**_anthropic_usage(scenario), "output_tokens": 1}
    events = [
        _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {**message, "content": [], "stop_reason": None, "usage": start_usage},
            },
        ),
        _sse("ping", {"type": "ping"}),
    ]
    deltas_sent = 0
    for index, block in enumerate(content):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            pieces = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        else:
            start = {**block, "input": {}}
            pieces = [
                {"type": "input_json_delta", "partial_json": p}
                for p in _thirds(json.dumps(block["input"]))
            ]
        events.append(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for delta in pieces:
            if scenario.kind == "cut" and deltas_sent >= scenario.cut_after:
                return _anthropic_cut(scenario, events)
            events.append(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
            deltas_sent += 1
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    if scenario.kind == "cut":
        return _anthropic_cut(scenario, events)
    events.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": scenario.output_tokens},
            },
        )
    )
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return _Answer(200, events=events)


def _anthropic_cut(scenario: Scenario, events: list[str]) -> _Answer:
    if scenario.cut_how == "error":
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return _Answer(200, events=[*events, _sse("error", error)])
    return _Answer(200, events=events, cut="drop" if scenario.cut_how == "drop" else None)


# --- OpenAI ----------------------------------------------------------------------------
def _openai_usage(s: Scenario) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": s.input_tokens,
        "completion_tokens": s.output_tokens,
        "total_tokens": s.input_tokens + s.output_tokens,
    }
    if s.cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": s.cached_tokens, "audio_tokens": 0}
    return usage


def _llama_cpp_refusal() -> _Answer:
    # What llama-cpp-python's server answers: its request model allows only "text" and
    # "json_object", and the validation error surfaces as a 500.
    message = (
        "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n"
        "  Input should be 'text' or 'json_object' [type=literal_error, "
        "input_value='json_schema', input_type=str]"
    )
    payload = {
        "error": {"message": message, "type": "internal_server_error", "param": None, "code": None}
    }
    return _Answer(500, body=json.dumps(payload).encode())


def _openai_answer_function(scenario: Scenario, body: dict[str, Any]) -> str | None:
    """The function a dict answer is a call of: the one tool_choice names, or under
    "required" `scenario.tool` when it is one of the tools; None: JSON content."""
    if scenario.kind != "ok" or not isinstance(scenario.payload, dict):
        return None
    names = [(t.get("function") or {}).get("name") for t in body.get("tools") or []]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        return (choice.get("function") or {}).get("name")
    if choice == "required" and scenario.tool in names:
        return scenario.tool
    return None


def _openai_answer(scenario: Scenario, body: dict[str, Any]) -> _Answer:
    if scenario.kind == "status":
        payload = {
            "error": {"message": scenario.payload, "type": "scripted", "code": scenario.status}
        }
        return _Answer(scenario.status, _error_headers(scenario), json.dumps(payload).encode())
    if scenario.kind == "malformed":
        return _Answer(200, body=b'{"id": "chatcmpl-1", "choices": [ {"message": ')
    if scenario.kind == "llama_cpp":
        if (body.get("response_format") or {}).get("type") == "json_schema":
            return _llama_cpp_refusal()
        return _openai_answer(scenario.then or ok(), body)
    calls = [
        {
            "id": f"call_fake_{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        for i, (name, arguments) in enumerate(scenario.calls, start=1)
    ]
    answer_fn = _openai_answer_function(scenario, body)
    if scenario.kind == "tool_calls":
        content: str | None = scenario.payload or None
        finish = "tool_calls"
    elif answer_fn is not None:  # the answer as the function call tool_choice asks for
        calls = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": answer_fn, "arguments": json.dumps(scenario.payload)},
            }
        ]
        content, finish = None, "tool_calls"
    else:
        content = _answer_text(scenario.payload)
        finish = "stop"
    created = int(time.time())
    model = body.get("model", "unknown")
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        payload = {
            "id": "chatcmpl-fake-1",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _openai_usage(scenario),
        }
        return _Answer(
            200, body=json.dumps(payload).encode(), cut="drop" if scenario.kind == "cut" else None
        )

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        data: dict[str, Any] = {
            "id": "chatcmpl-fake-1",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        if include_usage:
            data["usage"] = None
        return f"data: {json.dumps(data)}\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    sent = 0
    for piece in _pieces(content or ""):
        if scenario.kind == "cut" and sent >= scenario.cut_after:
            break
        events.append(chunk({"content": piece}))
        sent += 1
    if scenario.kind == "cut":
        if scenario.cut_how == "error":
            error = {
                "error": {
                    "message": "The server had an error while processing your request.",
                    "type": "server_error",
                }
            }
            events.append(f"data: {json.dumps(error)}\n\n")
            return _Answer(200, events=events)
        return _Answer(200, events=events, cut="drop" if scenario.cut_how == "drop" else None)
    for index, call in enumerate(calls):
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
        )
        for piece in _thirds(call["function"]["arguments"]):
            events.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            )
    events.append(chunk({}, finish))
    if include_usage:
        usage_chunk = {
            "id": "chatcmpl-fake-1",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _openai_usage(scenario),
        }
        events.append(f"data: {json.dumps(usage_chunk)}\n\n")
    events.append("data: [DONE]\n\n")
    return _Answer(200, events=events)


EMBEDDING_DIM = 32  # when the request asks for no `dimensions`


def fake_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """Each lower-cased word adds 1 to a dimension chosen by its hash; unit length."""
    vector = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.sha1(word.encode()).hexdigest(), 16) % dim] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _embeddings_answer(scenario: Scenario, body: dict[str, Any]) -> _Answer:
    if scenario.kind in ("status", "malformed"):
        return _openai_answer(scenario, body)
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
    return _Answer(200, body=json.dumps(payload).encode())
