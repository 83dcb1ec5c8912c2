"""Anthropic Messages API through the official `anthropic` SDK.

Structured output is a forced tool call: the schema becomes the input_schema of an answer
tool and tool_choice names it, so the answer arrives as an already-parsed tool input.
With tools of the caller's on the request as well, the answer tool is one more tool and
tool_choice is "any": the model either calls a real tool or gives its answer.

Streaming (`request.on_delta`) goes through `messages.stream`: text deltas, and the
answer tool's JSON as it is written, reach the callback; a stream that ends before
`message_stop` is a ProviderTransientError, never a half answer.

With `answer_schemas` on the request, every answer schema listed there is a tool of its
own (the one named by schema_name is the answer; another one called is a
ProviderResponseError), so the calls of a stage send one list of tools.

Cache hints put `cache_control: {"type": "ephemeral"}` breakpoints on the last tool
definition, on the last message of the part the whole run shares (`cache_shared`) and on
the last message of the request's stable prefix (on the system prompt when the prefix is
nothing else); usage reports
cache reads and writes, which Anthropic counts apart from `input_tokens` and Usage
counts inside it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from swarm.providers.base import (
    STOP_END,
    STOP_MAX_TOKENS,
    STOP_OTHER,
    STOP_REFUSAL,
    STOP_TOOL_CALLS,
    Completion,
    CompletionRequest,
    Message,
    NoRouteError,
    ProviderBadRequest,
    ProviderError,
    ProviderResponseError,
    ProviderTransientError,
    StreamDelta,
    TextBlock,
    ToolCall,
    ToolResult,
    Usage,
    tools_check,
)
from swarm.providers.capabilities import DEFAULT_STORE, Capabilities, CapabilityStore
from swarm.providers.jsontext import json_from_text, schema_instruction
from swarm.providers.retry import sdk_error_map, sdk_stream_error_map
from swarm.providers.streaming import DeltaSink, StreamCallbackError
from swarm.redact import redact

DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
_TOOL_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")
EPHEMERAL = {"type": "ephemeral"}
_STOP_REASONS = {
    "end_turn": STOP_END,
    "stop_sequence": STOP_END,
    "tool_use": STOP_TOOL_CALLS,
    "max_tokens": STOP_MAX_TOKENS,
    "refusal": STOP_REFUSAL,
}


def anthropic_model_id(model: str) -> str:
    """The id Anthropic's API knows: no "anthropic/" prefix, and "4.1" spelled "4-1"
    (gateways such as OpenRouter write versions with dots, Anthropic never does)."""
    if model.startswith("anthropic/"):
        model = model[len("anthropic/") :]
    return re.sub(r"(\d)\.(\d)", r"\1-\2", model)


def _content(message: Message) -> str | list[dict[str, Any]]:
    if isinstance(message.content, str):
        return message.content
    # Anthropic wants a user turn's tool_result blocks before any text.
    results = [b for b in message.content if isinstance(b, ToolResult)]
    others = [b for b in message.content if not isinstance(b, ToolResult)]
    blocks: list[dict[str, Any]] = []
    for b in (*results, *others):
        if isinstance(b, ToolResult):
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": b.call_id,
                "content": b.content,
            }
            if b.is_error:
                block["is_error"] = True
            blocks.append(block)
        elif isinstance(b, ToolCall):
            blocks.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.arguments})
        elif isinstance(b, TextBlock) and b.text:  # the API refuses empty text blocks
            blocks.append({"type": "text", "text": b.text})
    return blocks


def _with_breakpoint(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    if blocks:
        blocks[-1] = {**blocks[-1], "cache_control": EPHEMERAL}
    return blocks


def _tool_name(schema_name: str) -> str:
    return _TOOL_NAME_BAD.sub("_", schema_name)[:64] or "answer"


def _answer_tools(request: CompletionRequest, answer_tool: str | None) -> dict[str, Any]:
    """{tool name: schema} of the answer tools to send, in the request's fixed order: the
    sibling calls' answer schemas too (request.answer_schemas), so their tools are one
    cacheable prefix. Only this request's answer tool when it is not among them."""
    if answer_tool is None:
        return {}
    tools = {_tool_name(name): schema for name, schema in request.answer_schemas}
    if answer_tool not in tools:
        return {answer_tool: request.json_schema}
    tools[answer_tool] = request.json_schema
    return tools


def _usage(raw: Any) -> Usage:
    plain = getattr(raw, "input_tokens", 0) or 0
    read = getattr(raw, "cache_read_input_tokens", 0) or 0
    written = getattr(raw, "cache_creation_input_tokens", 0) or 0
    return Usage(
        input_tokens=plain + read + written,
        output_tokens=getattr(raw, "output_tokens", 0) or 0,
        cached_input_tokens=read,
        cache_write_tokens=written,
    )


class AnthropicBackend:
    """`complete` calls POST /v1/messages once (no SDK retries) and maps failures onto the
    ProviderError hierarchy. The key is read from `env[key_env]` when the backend is
    built and lives only inside the SDK client. What it sends for structured output,
    tools, streaming and cache hints follows `capabilities(model)` from the store."""

    name = "anthropic"

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        key_env: str = DEFAULT_KEY_ENV,
        base_url: str | None = None,
        capabilities: CapabilityStore | None = None,
    ) -> None:
        import anthropic  # deferred: importing the SDK costs about a second

        env = os.environ if env is None else env
        api_key = env.get(key_env)
        if not api_key:
            raise NoRouteError(f"the anthropic backend needs env var {key_env} (not set)")
        self._anthropic = anthropic
        self.base_url = base_url or env.get("ANTHROPIC_BASE_URL") or None
        self._store = DEFAULT_STORE if capabilities is None else capabilities
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=self.base_url, max_retries=0
        )
        # Recent SDK releases dropped `temperature` from messages.create (newer models fix
        # it); send it only to an SDK that still takes it.
        messages = anthropic.resources.messages.AsyncMessages
        self._takes_temperature = {
            "create": "temperature" in inspect.signature(messages.create).parameters,
            "stream": "temperature" in inspect.signature(messages.stream).parameters,
        }

    def capabilities(self, model: str) -> Capabilities:
        return self._store.get(self.name, anthropic_model_id(model), self.base_url)

    async def complete(self, request: CompletionRequest) -> Completion:
        caps = self.capabilities(request.model)
        if request.tools and not caps.tools:
            raise ProviderBadRequest(f"anthropic: {request.model} has no tool calling here")
        answer_tool = None
        if request.json_schema is not None and caps.structured == "tool":
            answer_tool = _tool_name(request.schema_name)
        for name in _answer_tools(request, answer_tool) or (None,):
            tools_check(request, reserved=name)
        streaming = request.on_delta is not None and caps.streaming
        kwargs = self._kwargs(request, caps, answer_tool)
        if self._takes_temperature["stream" if streaming else "create"]:
            kwargs["temperature"] = request.temperature

        sink = DeltaSink(request.on_delta if streaming else None)
        answer_json = DeltaSink(None)
        started = time.monotonic()
        try:
            # The SDK timeout bounds each read; this bounds the whole call.
            async with asyncio.timeout(request.timeout + 1.0):
                if streaming:
                    message = await self._stream(kwargs, sink, answer_json, answer_tool)
                else:
                    message = await self._client.messages.create(**kwargs)
        except ProviderError:
            raise
        except StreamCallbackError as exc:
            raise exc.original from None
        except Exception as exc:
            raise self._map_error(exc) from None
        latency = time.monotonic() - started

        completion = self._completion(
            request, message, answer_tool, answer_json.text if streaming else "", latency
        )
        if request.on_delta is not None and not streaming and completion.text:
            request.on_delta(StreamDelta(completion.text))
        return completion

    def _kwargs(
        self, request: CompletionRequest, caps: Capabilities, answer_tool: str | None
    ) -> dict[str, Any]:
        prefix_end = request.cache_prefix if caps.cache == "breakpoints" else 0
        system_parts = [m.text for m in request.messages if m.role == "system"]
        if request.json_schema is not None and answer_tool is None:
            system_parts.append(schema_instruction(request.json_schema))
        system = "\n\n".join(p for p in system_parts if p)
        in_prefix = [i for i, m in enumerate(request.messages[:prefix_end]) if m.role != "system"]
        # Breakpoints (at most 4 a request): after the tools, at the end of the part the
        # whole run shares, at the end of the stable prefix. Anthropic also finds what an
        # earlier request wrote up to 20 blocks before a breakpoint, so a debate round's
        # breakpoint reads what the round before it wrote.
        shared_end = request.cache_shared if caps.cache == "breakpoints" else 0
        marks = set(in_prefix[-1:])
        shared_in = [i for i in in_prefix if i < shared_end]
        if shared_in:
            marks.add(shared_in[-1])
        messages = []
        for i, m in enumerate(request.messages):
            if m.role == "system":
                continue
            content = _content(m)
            if i in marks:
                content = _with_breakpoint(content)
            messages.append({"role": m.role, "content": content})
        kwargs: dict[str, Any] = {
            "model": anthropic_model_id(request.model),
            "messages": messages,
            "max_tokens": request.max_tokens,
            "timeout": request.timeout,
        }
        if system:
            # The system text ends the prefix only when no message of it follows.
            cache_system = not marks and any(
                m.role == "system" for m in request.messages[:prefix_end]
            )
            kwargs["system"] = _with_breakpoint(system) if cache_system else system
        tools = [
            {"name": t.name, "description": t.description, "input_schema": t.input_schema}
            for t in request.tools
        ]
        for name, schema in _answer_tools(request, answer_tool).items():
            tools.append(
                {
                    "name": name,
                    "description": f"Return the {name} as this tool's input.",
                    "input_schema": schema,
                }
            )
        if tools and prefix_end:
            # The definitions are the same for every call that has them, in every stage.
            tools[-1] = {**tools[-1], "cache_control": EPHEMERAL}
        if tools:
            kwargs["tools"] = tools
        choice = request.tool_choice
        if answer_tool is not None:
            if not request.tools or choice == "none":
                kwargs["tool_choice"] = {"type": "tool", "name": answer_tool}
            elif choice in (None, "auto", "required"):
                kwargs["tool_choice"] = {"type": "any"}  # a real tool, or the answer
            else:
                kwargs["tool_choice"] = {"type": "tool", "name": choice}
        elif request.tools and choice is not None:
            kwargs["tool_choice"] = {
                "auto": {"type": "auto"},
                "required": {"type": "any"},
                "none": {"type": "none"},
            }.get(choice, {"type": "tool", "name": choice})
        return kwargs

    async def _stream(
        self,
        kwargs: dict[str, Any],
        sink: DeltaSink,
        answer_json: DeltaSink,
        answer_tool: str | None,
    ) -> Any:
        # Errors opening the stream (429, 529, 401...) carry their HTTP status and are
        # mapped by the caller; errors once events flow mean the stream was cut.
        async with self._client.messages.stream(**kwargs) as stream:
            try:
                names: dict[int, str | None] = {}
                finished = False
                async for event in stream:
                    if event.type == "content_block_start":
                        block = event.content_block
                        names[event.index] = getattr(block, "name", None)
                    elif event.type == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta":
                            sink(delta.text)
                        elif (
                            delta.type == "input_json_delta"
                            and answer_tool is not None
                            and names.get(event.index) == answer_tool
                        ):
                            answer_json(delta.partial_json)
                            sink(delta.partial_json)
                    elif event.type == "message_stop":
                        finished = True
                if not finished:
                    raise ProviderTransientError(
                        "anthropic: stream ended before the answer was complete"
                    )
                return await stream.get_final_message()
            except (ProviderError, StreamCallbackError):
                raise
            except Exception as exc:
                raise sdk_stream_error_map(self.name, self._anthropic, exc) from None

    def _completion(
        self,
        request: CompletionRequest,
        message: Any,
        answer_tool: str | None,
        streamed_json: str,
        latency: float,
    ) -> Completion:
        texts: list[str] = []
        calls: list[ToolCall] = []
        answer: Any = None
        siblings = set(_answer_tools(request, answer_tool)) - {answer_tool}
        for b in list(message.content or []):
            kind = getattr(b, "type", "")
            if kind == "text":
                texts.append(b.text)
            elif kind == "tool_use":
                if answer_tool is not None and b.name == answer_tool:
                    answer = b.input if answer is None else answer
                elif b.name in siblings:
                    # Another call's answer shape: never taken for this one's answer.
                    raise ProviderResponseError(
                        f"anthropic: answered with the {b.name} tool, asked for {answer_tool}"
                    )
                else:
                    calls.append(ToolCall(b.id, b.name, dict(b.input or {})))
        stop = _STOP_REASONS.get(message.stop_reason or "", STOP_OTHER)
        text = "".join(texts)
        parsed: Any = None
        if calls:
            stop = STOP_TOOL_CALLS
        elif answer_tool is not None:
            if not isinstance(answer, dict):
                raise ProviderResponseError(
                    f"anthropic: asked for a {answer_tool} tool call, got none "
                    f"(stop_reason {message.stop_reason})"
                )
            parsed = answer
            text = streamed_json or json.dumps(parsed, ensure_ascii=False)
            if stop == STOP_TOOL_CALLS:
                stop = STOP_END  # the answer tool's call is the answer, not a tool to run
        elif not text:
            raise ProviderResponseError(
                f"anthropic: answer has no text (stop_reason {message.stop_reason})"
            )
        elif request.json_schema is not None:
            try:
                parsed = json_from_text(text)
            except ValueError as exc:
                raise ProviderResponseError(f"anthropic: {redact(str(exc))}") from None
        return Completion(
            text=text,
            parsed=parsed,
            usage=_usage(message.usage),
            cost_usd=0.0,
            latency_s=latency,
            provider=self.name,
            model=request.model,
            tool_calls=tuple(calls),
            stop_reason=stop,
        )

    async def aclose(self) -> None:
        """Close the SDK client's connections (before the event loop that opened them ends)."""
        await self._client.close()

    def _map_error(self, exc: Exception) -> ProviderError:
        return sdk_error_map(self.name, self._anthropic, exc)
