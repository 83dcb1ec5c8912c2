"""Cassettes: record any backend's answers to a JSON-lines file, and answer from one later.

Each line is one call: {"key", "v", "model", "schema_name", "messages", "json_schema",
"tools", "tool_choice", "cache_prefix", "metadata", "streamed", "capabilities",
"completion": {"text", "parsed", "tool_calls", "stop_reason", "usage", ...}}. Messages
are written as {"role", "content"} with content a string or a list of typed blocks
(base.message_to_dict). The key is a SHA-256 of what determines the answer (model,
messages, json_schema, and the tools when there are any) of the request as it was made;
everything else on the line is redacted before it is written, so a cassette can be
committed or attached to a bug report.

Version 1 lines (no tools, no cache usage, text-only messages) still load and replay:
their keys are computed the same way.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from swarm.providers.base import (
    STOP_END,
    Completion,
    CompletionRequest,
    Provider,
    ProviderError,
    StreamDelta,
    Usage,
    message_to_dict,
    tool_call_from_dict,
    tool_spec_to_dict,
)
from swarm.providers.capabilities import Capabilities
from swarm.providers.streaming import text_pieces
from swarm.redact import redact

CASSETTE_VERSION = 2


def request_key(request: CompletionRequest) -> str:
    """Stable hash of what determines an answer: model, messages, JSON Schema, and the
    tools and tool choice when tools are offered.

    Metadata, temperature, timeouts, cache hints and the stream callback are left out so
    a replay does not depend on them. A request without tools hashes exactly as in
    version 1 cassettes."""
    material: dict[str, Any] = {
        "model": request.model,
        "messages": [[m.role, message_to_dict(m)["content"]] for m in request.messages],
        "json_schema": request.json_schema,
    }
    if request.tools:
        material["tools"] = [tool_spec_to_dict(t) for t in request.tools]
        material["tool_choice"] = request.tool_choice
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class ReplayProvider:
    """Answers from the cassette at `path`, read once when built.

    A request recorded several times is answered with its recordings in order, then the
    last one again. An unknown request raises ProviderError naming the key and the path;
    a missing or unreadable cassette raises ProviderError when the provider is built."""

    name = "replay"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ProviderError(f"replay cassette not found: {self.path}")
        self._answers: dict[str, list[dict[str, Any]]] = {}
        self._served: dict[str, int] = {}
        self._capabilities: dict[str, Capabilities] = {}
        self._lock = threading.Lock()
        with self.path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    key = entry["key"]
                    completion = entry["completion"]
                except (ValueError, KeyError, TypeError):
                    raise ProviderError(
                        f"replay cassette {self.path} line {lineno} is not a recorded call"
                    ) from None
                self._answers.setdefault(key, []).append(completion)
                caps = entry.get("capabilities")
                if isinstance(caps, dict) and isinstance(entry.get("model"), str):
                    self._capabilities.setdefault(entry["model"], Capabilities.from_dict(caps))

    def __len__(self) -> int:
        return sum(len(v) for v in self._answers.values())

    def capabilities(self, model: str) -> Capabilities | None:
        """What the recorded backend could do for `model` when the cassette was recorded
        (so a caller that adapts to capabilities asks the same requests again), or None
        when no line of the cassette says."""
        return self._capabilities.get(model)

    async def complete(self, request: CompletionRequest) -> Completion:
        key = request_key(request)
        with self._lock:
            answers = self._answers.get(key)
            if not answers:
                raise ProviderError(
                    f"replay: no recorded answer for {request.model} (key {key}) in {self.path}"
                )
            index = self._served.get(key, 0)
            self._served[key] = index + 1
            answer = answers[min(index, len(answers) - 1)]
        usage = answer.get("usage") or {}
        text = answer.get("text", "")
        if request.on_delta is not None:
            # The recorded text, in pieces, so a stream subscriber sees it arrive.
            for piece in text_pieces(text):
                request.on_delta(StreamDelta(piece))
        return Completion(
            text=text,
            parsed=answer.get("parsed"),
            usage=Usage(
                input_tokens=int(usage.get("input_tokens", 0)),
                output_tokens=int(usage.get("output_tokens", 0)),
                cached_input_tokens=int(usage.get("cached_input_tokens", 0)),
                cache_write_tokens=int(usage.get("cache_write_tokens", 0)),
            ),
            cost_usd=0.0,  # a replay spends nothing
            latency_s=0.0,
            provider=self.name,
            model=request.model,
            tool_calls=tuple(tool_call_from_dict(c) for c in answer.get("tool_calls") or ()),
            stop_reason=str(answer.get("stop_reason") or STOP_END),
        )


# One lock per cassette file, shared by every RecordingProvider writing it, so lines from
# concurrent calls (several event loops, threads) never interleave.
_FILE_LOCKS: dict[str, threading.Lock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path) -> threading.Lock:
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(str(path.resolve()), threading.Lock())


class RecordingProvider:
    """Wraps `inner`; after each successful call appends one redacted line to the cassette
    at `path` (created with its folder if missing) and returns the answer unchanged.
    Writes are append-only under a thread lock and an flock, so concurrent calls, even
    from several processes, each add one whole line. Failed calls are not recorded."""

    def __init__(
        self,
        inner: Provider,
        path: str | os.PathLike[str],
        *,
        capabilities: Capabilities | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.path = Path(path)
        self.capabilities = capabilities  # of the backend behind `inner`, written on each line

    async def complete(self, request: CompletionRequest) -> Completion:
        completion = await self.inner.complete(request)
        self.record(request, completion)
        return completion

    def record(self, request: CompletionRequest, completion: Completion) -> None:
        entry: dict[str, Any] = {
            "v": CASSETTE_VERSION,
            "key": request_key(request),
            "model": request.model,
            "schema_name": request.schema_name,
            "messages": [message_to_dict(m) for m in request.messages],
            "json_schema": request.json_schema,
            "tools": [tool_spec_to_dict(t) for t in request.tools],
            "tool_choice": request.tool_choice,
            "cache_prefix": request.cache_prefix,
            "metadata": request.metadata,
            "streamed": request.on_delta is not None,
            "capabilities": self.capabilities.as_dict() if self.capabilities else None,
            "completion": {
                "text": completion.text,
                "parsed": completion.parsed,
                "tool_calls": [dataclasses.asdict(c) for c in completion.tool_calls],
                "stop_reason": completion.stop_reason,
                "usage": dataclasses.asdict(completion.usage),
                "provider": completion.provider,
                "model": completion.model,
                "cost_usd": completion.cost_usd,
                "latency_s": round(completion.latency_s, 4),
                "attempts": completion.attempts,
            },
        }
        # The key stays as computed from the real request so replays still match it.
        safe = redact({k: v for k, v in entry.items() if k != "key"})
        safe = {"key": entry["key"], **safe}
        line = json.dumps(safe, ensure_ascii=False, default=str) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.path), self.path.open("a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.write(line)
                fh.flush()
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
