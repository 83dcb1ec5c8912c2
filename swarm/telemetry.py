"""The engine's spans, on the OpenTelemetry API, after the GenAI semantic conventions: an
agent turn (`invoke_agent <role>`), each LLM call (`chat <model>`, with the provider,
models, token usage and finish reason) and each tool call (`execute_tool <name>`).

Only `opentelemetry-api` is imported: a small pure-Python package whose spans do nothing
until the process installs and configures an SDK (tekton_site.tracing does, when the
operator sets the OTLP variables), so the engine stays free of Django and of exporters,
and costs next to nothing with tracing off.

No prompt, answer or tool argument goes into an attribute unless content capture was
turned on (`configure(capture_content=True)`), and then only redacted (swarm.redact).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from swarm.redact import redact

TRACER = "tekton.swarm"
_capture_content = False

# Completion.stop_reason -> gen_ai.response.finish_reasons values.
FINISH_REASONS = {
    "end": "stop",
    "max_tokens": "length",
    "tool_calls": "tool_calls",
    "refusal": "content_filter",
    "other": "other",
}


def configure(*, capture_content: bool) -> None:
    """Turn content capture (redacted prompts, answers and tool arguments) on or off."""
    global _capture_content
    _capture_content = bool(capture_content)


def capture_content() -> bool:
    return _capture_content


def _tracer():
    # Looked up per span, not cached: the process may install its provider after import.
    return trace.get_tracer(TRACER)


def _content(value: Any) -> str:
    return json.dumps(redact(value), ensure_ascii=False, default=str)[:20000]


def _messages(messages) -> list[dict[str, Any]]:
    return [{"role": m.role, "parts": [{"type": "text", "content": m.text}]} for m in messages]


def _fail(span: Span, exc: BaseException) -> None:
    span.set_attribute("error.type", type(exc).__name__)
    span.set_status(
        Status(StatusCode.ERROR, redact(str(exc)).splitlines()[0][:300] if str(exc) else "")
    )


def model_parts(model_id: str) -> tuple[str, str]:
    """("anthropic", "claude-opus-4.1") from "anthropic/claude-opus-4.1"."""
    vendor, _, model = model_id.partition("/")
    return (vendor, model) if model else ("", vendor)


def agent_turn(ask):
    """Decorates `_StageRunner._ask_once(role, rnd, kind, ...)`: one `invoke_agent` span
    per turn (its calls, tool calls and repair), parent of the turn's LLM calls. The
    wrapped call returns a tuple whose first item is the answer (None: none valid)."""

    @functools.wraps(ask)
    async def traced(runner, role: str, rnd: int, kind: str, *args, **kwargs):
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": role,
            "tekton.stage": runner.stage,
            "tekton.round": rnd,
            "tekton.turn": kind,
        }
        if runner.inp.run_id is not None:
            attributes["tekton.run.id"] = runner.inp.run_id
        with _tracer().start_as_current_span(
            f"invoke_agent {role}",
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = await ask(runner, role, rnd, kind, *args, **kwargs)
            except BaseException as exc:
                _fail(span, exc)
                raise
            answer = result[0]
            span.set_attribute("tekton.answer.valid", answer is not None)
            if answer is None:
                span.set_status(Status(StatusCode.ERROR, "no valid answer after a repair"))
            elif _capture_content:
                span.set_attribute("gen_ai.output.messages", _content(answer))
            return result

    return traced


def llm_span_start(request) -> Span:
    """A `chat <model>` client span for one CompletionRequest (end it with llm_span_end)."""
    vendor, model = model_parts(request.model)
    meta = request.metadata or {}
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": request.max_tokens,
        "gen_ai.request.temperature": request.temperature,
        "gen_ai.output.type": "json" if request.json_schema else "text",
        "tekton.model": request.model,
    }
    if vendor:
        attributes["tekton.model.vendor"] = vendor
    for key in ("stage", "role", "round", "kind", "attempt", "run_id"):
        if meta.get(key) is not None:
            attributes[f"tekton.{key}"] = meta[key]
    span = _tracer().start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes)
    if _capture_content:
        span.set_attribute("gen_ai.input.messages", _content(_messages(request.messages)))
    return span


def llm_span_end(
    span: Span, *, completion=None, error: BaseException | None = None, provider: str = ""
) -> None:
    """Finish an LLM span with the completion (usage, finish reason) or the error."""
    if completion is not None:
        usage = completion.usage
        span.set_attributes(
            {
                "gen_ai.provider.name": completion.provider,
                "gen_ai.response.model": completion.model,
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": usage.cached_input_tokens,
                "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
                "gen_ai.response.finish_reasons": [
                    FINISH_REASONS.get(completion.stop_reason, completion.stop_reason)
                ],
                "tekton.cost_usd": float(completion.cost_usd),
                "tekton.attempts": completion.attempts,
            }
        )
        if _capture_content:
            span.set_attribute(
                "gen_ai.output.messages",
                _content(
                    [{"role": "assistant", "parts": [{"type": "text", "content": completion.text}]}]
                ),
            )
    if error is not None:
        span.set_attribute("gen_ai.provider.name", str(getattr(error, "provider", "") or provider))
        _fail(span, error)
    span.end()


@contextmanager
def tool_span(
    name: str, call_id: str = "", arguments: dict[str, Any] | None = None
) -> Iterator[Span]:
    """An `execute_tool <name>` span around one tool call; an exception marks it failed."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.type": "function",
    }
    if call_id:
        attributes["gen_ai.tool.call.id"] = call_id
    if _capture_content and arguments is not None:
        attributes["gen_ai.tool.call.arguments"] = _content(arguments)
    with _tracer().start_as_current_span(
        f"execute_tool {name}",
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            _fail(span, exc)
            raise
