"""A scripted model for end-to-end runs: it answers every Diamond v5 call the way the
offline backend would (it reads the same `<tekton-context>` block off the wire), except
that the code stage's artifact carries the diff a test gives it. The offline backend
cannot invent a fix; this one writes exactly the change the test wants to measure.

Use it behind the fake LLM server: `FakeLlmServer(responder=DiamondResponder(diff))`.
"""

from __future__ import annotations

import threading
from typing import Any

from swarm.diffs import diff_paths
from swarm.prompts import context_extract
from swarm.providers.base import CompletionRequest, Message
from swarm.providers.offline import OfflineProvider
from tests.fakes.llm_server import Scenario, ok


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))


def _schema_name(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    if isinstance(fmt.get("json_schema"), dict):
        return str(fmt["json_schema"].get("name") or "")
    for tool in body.get("tools") or []:  # Anthropic: the answer is the forced tool
        if isinstance(tool, dict) and tool.get("name", "").endswith(("_answer", "_artifact")):
            return str(tool["name"])
    return ""


class DiamondResponder:
    """responder(path, body) for FakeLlmServer. `diff` is the code stage's change; every
    call it answered is kept in `calls` as (stage, role, kind)."""

    def __init__(self, diff: str) -> None:
        self.diff = diff
        self.calls: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._offline = OfflineProvider(latency_ms=0)

    def __call__(self, path: str, body: dict[str, Any]) -> Scenario:
        wire = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        messages = [Message(str(m.get("role") or "user"), _text(m.get("content"))) for m in wire]
        if isinstance(body.get("system"), str):
            messages.insert(0, Message("system", body["system"]))
        ctx = context_extract(messages) or {}
        stage, role = str(ctx.get("stage") or ""), str(ctx.get("role") or "proponent")
        # The turn names its answer; the schema only when the turn does not (older prompts).
        name = str(ctx.get("answer") or "") or _schema_name(body)
        kind = {"debater_answer": "debater", "mediator_answer": "mediator"}.get(name, "draft")
        with self._lock:
            self.calls.append((stage, role, kind))
        request = CompletionRequest(
            model="offline/scripted",
            messages=tuple(messages),
            json_schema={"type": "object"},
            metadata={"stage": stage, "role": role, "round": ctx.get("round", 0), "kind": kind},
        )
        answer = self._offline.answer(request)
        if stage == "code" and isinstance(answer, dict):
            artifact = answer["artifact"] if kind == "mediator" else answer
            if kind in ("mediator", "draft"):
                artifact["diff"] = self.diff
                artifact["files_changed"] = diff_paths(self.diff)
                artifact["risk_notes"] = ["scripted change"]
        return ok(answer, tool=name or None)
