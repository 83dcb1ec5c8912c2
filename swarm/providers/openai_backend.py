"""OpenAI Chat Completions through the official `openai` SDK, at any compatible base URL:
OpenAI itself, OpenRouter, Portkey, AIMLAPI, Ollama, vLLM, llama.cpp.

Structured output follows the capability store's mode for (base URL, model):
- "json_schema": response_format json_schema with strict off (gateways and local servers
  differ in what strict mode accepts);
- "json_object": response_format {"type": "json_object", "schema": ...}, which llama.cpp
  accepts where it answers json_schema with a 500;
- "prompt": no response_format; the schema goes into the system prompt.
The content is parsed as JSON in every mode, tolerating ```json fences. A request with
tools and `answer_schemas` sends its answer schemas as functions beside its tools instead
(tool_choice "required": a real tool or the answer), so the calls listing them send one
tools list and no response_format: the prefix OpenAI caches starts with the tools, and a
response_format schema is a prefix of the system message. The named function's arguments
are the answer; another answer function called is a ProviderResponseError.

Tools are sent as functions; tool results go back as role "tool" messages. Streaming uses
`stream=True` with `stream_options={"include_usage": True}`; a stream that ends without
a finish_reason is a ProviderTransientError. A cache key goes out as prompt_cache_key
where the store says the server takes one (OpenAI itself); cached input tokens come back
in usage.prompt_tokens_details.cached_tokens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import inspect
import json
import logging
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
    Usage,
    message_to_dict,
    tools_check,
)
from swarm.providers.capabilities import (
    DEFAULT_STORE,
    FEATURES,
    OPENAI_BASE_URL,
    Capabilities,
    CapabilityStore,
)
from swarm.providers.jsontext import json_from_text, schema_instruction
from swarm.providers.retry import sdk_error_map, sdk_stream_error_map
from swarm.providers.streaming import DeltaSink, StreamCallbackError
from swarm.redact import redact

# Local servers (Ollama, vLLM) take no key, but the SDK refuses to start without one.
NO_KEY_PLACEHOLDER = "no-key-needed"
# OpenAI's reasoning models reject any temperature but the default.
logger = logging.getLogger("tekton.swarm.providers.openai")

_FIXED_TEMPERATURE = re.compile(r"^(?:o\d|gpt-5)")
# How servers word a request they cannot take when they wrap it in a 500 (llama.cpp's
# pydantic "validation error", "not supported", ...): a bad request, not an outage.
_VALIDATION_ERROR = re.compile(
    r"validation error|not supported|unsupported|unrecognized|unknown (?:field|parameter)|"
    r"extra (?:fields|inputs) not permitted|input should be|invalid (?:value|parameter|type)"
)


class _Refusable(Exception):
    """A mapped error of a call and the arguments it sent (internal to complete())."""

    def __init__(self, error: ProviderError, sent: dict[str, Any]) -> None:
        super().__init__(str(error))
        self.error, self.sent = error, sent


_STOP_REASONS = {
    "stop": STOP_END,
    "tool_calls": STOP_TOOL_CALLS,
    "function_call": STOP_TOOL_CALLS,
    "length": STOP_MAX_TOKENS,
    "content_filter": STOP_REFUSAL,
}
TOOL_ERROR_PREFIX = "[tool error] "


def _messages(request: CompletionRequest, instruction: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    placed = instruction is None
    for m in request.messages:
        if not placed and m.role != "system":
            out.append({"role": "system", "content": instruction})
            placed = True
        out.extend(_wire(m))
    if not placed:
        out.append({"role": "system", "content": instruction})
    return out


def _wire(m: Message) -> list[dict[str, Any]]:
    if isinstance(m.content, str):
        return [{"role": m.role, "content": m.content}]
    text = m.text
    if m.role == "assistant":
        msg: dict[str, Any] = {"role": "assistant", "content": text or None}
        if m.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": json.dumps(c.arguments, ensure_ascii=False),
                    },
                }
                for c in m.tool_calls
            ]
        return [msg]
    # Tool results are messages of their own, right after the assistant's calls; any
    # text of the same turn follows them.
    out: list[dict[str, Any]] = [
        {
            "role": "tool",
            "tool_call_id": r.call_id,
            "content": (TOOL_ERROR_PREFIX if r.is_error else "") + r.content,
        }
        for r in m.tool_results
    ]
    if any(isinstance(b, TextBlock) and b.text for b in m.content):
        out.append({"role": m.role, "content": text})
    if not out:
        raise ProviderBadRequest(f"openai: a {m.role} message has no text and no tool results")
    return out


def _usage(raw: Any) -> Usage:
    if raw is None:
        return Usage()
    details = getattr(raw, "prompt_tokens_details", None)
    return Usage(
        input_tokens=getattr(raw, "prompt_tokens", 0) or 0,
        output_tokens=getattr(raw, "completion_tokens", 0) or 0,
        cached_input_tokens=(getattr(details, "cached_tokens", 0) or 0) if details else 0,
    )


def _function_name(schema_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", schema_name)[:64] or "answer"


def _answer_functions(request: CompletionRequest, caps: Capabilities) -> dict[str, Any]:
    """{function name: schema}: the answer schemas sent as functions beside the request's
    tools, so the calls that list them (request.answer_schemas) send one tools list, the
    head of the prefix OpenAI caches, where response_format (a prefix of the system
    message) differs per schema. Only for a request with tools, to a server that takes
    them and json_schema; else {} and the schema goes in response_format as before."""
    if request.json_schema is None or not request.tools or not request.answer_schemas:
        return {}
    if caps.structured != "json_schema" or not caps.tools:
        return {}
    fns = {_function_name(name): schema for name, schema in request.answer_schemas}
    own = _function_name(request.schema_name)
    if own not in fns:
        return {}
    fns[own] = request.json_schema
    return fns


def _cache_key(request: CompletionRequest) -> str | None:
    if request.cache_key:
        return request.cache_key
    if not request.cache_prefix:
        return None
    prefix = [message_to_dict(m) for m in request.messages[: request.cache_prefix]]
    blob = json.dumps([request.model, prefix], sort_keys=True, ensure_ascii=False)
    return "tekton-" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def _arguments(raw: str | None, name: str) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        raise ProviderResponseError(
            f"openai: arguments of the {name} tool call are not JSON"
        ) from None
    if not isinstance(value, dict):
        raise ProviderResponseError(f"openai: arguments of the {name} tool call are not an object")
    return value


class OpenAIBackend:
    """`complete` calls POST {base_url}/chat/completions once (no SDK retries) with
    `request.model` exactly as given (the router strips "openai/" for OpenAI itself and
    keeps vendor/model for gateways), and maps failures onto the ProviderError hierarchy.
    The key is read from `env[key_env]` when the backend is built (none for `key_env`
    None); `key_header` also sends it under that header (Portkey's x-portkey-api-key).
    What it sends follows `capabilities(model)` from the store."""

    name = "openai"

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        key_env: str | None = "OPENAI_API_KEY",
        base_url: str | None = None,
        key_header: str | None = None,
        capabilities: CapabilityStore | None = None,
    ) -> None:
        import openai  # deferred: importing the SDK is slow

        env = os.environ if env is None else env
        if key_env is None:
            api_key = NO_KEY_PLACEHOLDER
        else:
            api_key = env.get(key_env) or ""
            if not api_key:
                raise NoRouteError(f"the openai backend needs env var {key_env} (not set)")
        self.base_url = base_url or OPENAI_BASE_URL
        self._is_openai = self.base_url.rstrip("/") == OPENAI_BASE_URL
        self._openai = openai
        self._store = DEFAULT_STORE if capabilities is None else capabilities
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            default_headers={key_header: api_key} if key_header and key_env else None,
        )
        create = openai.resources.chat.completions.AsyncCompletions.create
        # Older SDKs lack the parameter; the server reads it from the body all the same.
        self._takes_cache_key = "prompt_cache_key" in inspect.signature(create).parameters

    def capabilities(self, model: str) -> Capabilities:
        return self._store.get(self.name, model, self.base_url)

    async def complete(self, request: CompletionRequest) -> Completion:
        """One answer. A server that refuses what was sent (json_schema, json_object,
        streaming, tools: a 400/422, or a validation error wrapped in a 500) is learned
        from: the store marks it refused for this base URL and model, and the same request
        goes again at once in the next mode (json_schema, json_object with the schema, the
        schema in the prompt). A refusal with nowhere left to fall back is a bad request,
        never retried as if transient."""
        for _ in range(len(FEATURES) + 1):
            caps = self.capabilities(request.model)
            if request.tools and not caps.tools and request.tool_choice in (None, "auto"):
                # The model was free not to call a tool: without tools it answers directly,
                # and the agent works from what its prompt holds.
                request = dataclasses.replace(request, tools=(), tool_choice=None)
            try:
                return await self._complete_as(request, caps)
            except _Refusable as wrapped:
                err = wrapped.error
                feature = self._refused_feature(err, wrapped.sent)
                if feature is None:
                    raise err from None
                logger.warning(
                    "openai: %s at %s refused %s; falling back (%s)",
                    request.model,
                    self.base_url,
                    feature,
                    str(err)[:200],
                )
                self._store.refuse(self.name, request.model, self.base_url, feature, str(err))
        raise ProviderBadRequest(f"openai: {request.model} refused every mode Tekton can send")

    def _refused_feature(self, err: ProviderError, sent: dict[str, Any]) -> str | None:
        """The feature the server refused in `sent` (the request's arguments), or None (an
        error that is not about a parameter). A server's validation error wrapped in a 500
        that names nothing to fall back from is raised as a ProviderBadRequest."""
        text = str(err).lower()
        if err.status not in (400, 422) and not (
            err.status is not None and err.status >= 500 and _VALIDATION_ERROR.search(text)
        ):
            return None
        kind = (sent.get("response_format") or {}).get("type")
        if kind in ("json_schema", "json_object") and ("response_format" in text or kind in text):
            return kind
        if sent.get("stream") and "stream" in text:
            return "streaming"
        if sent.get("tools") and ("tool" in text or "function" in text):
            return "tools"
        if err.status is not None and err.status >= 500:
            # A server's validation error about something else: a bad request all the same.
            raise ProviderBadRequest(str(err), status=err.status) from None
        return None

    async def _complete_as(self, request: CompletionRequest, caps: Capabilities) -> Completion:
        if request.tools and not caps.tools:
            raise ProviderBadRequest(f"openai: {request.model} has no tool calling here")
        answer_fns = _answer_functions(request, caps)
        for name in answer_fns or (None,):
            tools_check(request, reserved=name)
        streaming = request.on_delta is not None and caps.streaming
        kwargs = self._kwargs(request, caps)
        if streaming:
            kwargs["stream"] = True
            kwargs["stream_options"] = {"include_usage": True}

        sink = DeltaSink(request.on_delta if streaming else None)
        answer_name = _function_name(request.schema_name) if answer_fns else None
        answer_json = DeltaSink(None)
        started = time.monotonic()
        try:
            async with asyncio.timeout(request.timeout + 1.0):
                response = await self._client.chat.completions.create(**kwargs)
                if streaming:
                    content, calls, finish, usage = await self._consume(
                        response, sink, answer_name, answer_json
                    )
                else:
                    content, calls, finish, usage = self._read(response, request)
        except ProviderError:
            raise
        except StreamCallbackError as exc:
            raise exc.original from None
        except Exception as exc:
            # Carries what was sent, so complete() can tell which parameter was refused.
            raise _Refusable(self._map_error(exc), kwargs) from None
        latency = time.monotonic() - started

        if answer_name is not None:
            answers = [c for c in calls if c.name == answer_name]
            wrong = [c.name for c in calls if c.name in answer_fns and c.name != answer_name]
            if wrong and not answers:
                # Another call's answer shape: never taken for this one's answer.
                raise ProviderResponseError(
                    f"openai: answered with the {wrong[0]} function, asked for {answer_name}"
                )
            real = [c for c in calls if c.name not in answer_fns]
            if answers and not real:  # a real tool call goes first, as with Anthropic
                content = answer_json.text or json.dumps(answers[0].arguments, ensure_ascii=False)
                calls, finish = [], "stop"
            else:
                calls = real
        stop = _STOP_REASONS.get(finish or "", STOP_OTHER)
        parsed: Any = None
        if calls:
            stop = STOP_TOOL_CALLS
        elif not content:
            raise ProviderResponseError(f"openai: answer from {request.model} has no content")
        elif request.json_schema is not None:
            try:
                parsed = json_from_text(content)
            except ValueError as exc:
                raise ProviderResponseError(f"openai: {redact(str(exc))}") from None
        if request.on_delta is not None and not streaming and content:
            request.on_delta(StreamDelta(content))
        return Completion(
            text=content,
            parsed=parsed,
            usage=usage,
            cost_usd=0.0,
            latency_s=latency,
            provider=self.name,
            model=request.model,
            tool_calls=tuple(calls),
            stop_reason=stop,
        )

    def _kwargs(self, request: CompletionRequest, caps: Capabilities) -> dict[str, Any]:
        answer_fns = _answer_functions(request, caps)
        mode = caps.structured if request.json_schema is not None else None
        if answer_fns:
            mode = "tool"
        instruction = None
        if mode == "prompt":
            instruction = schema_instruction(request.json_schema or {})
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(request, instruction),
            "timeout": request.timeout,
        }
        if self._is_openai:
            # OpenAI deprecated max_tokens; compatible servers mostly know only max_tokens.
            kwargs["max_completion_tokens"] = request.max_tokens
        else:
            kwargs["max_tokens"] = request.max_tokens
        if not (self._is_openai and _FIXED_TEMPERATURE.match(request.model)):
            kwargs["temperature"] = request.temperature
        if mode == "json_schema":
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": re.sub(r"[^A-Za-z0-9_-]", "_", request.schema_name)[:64] or "answer",
                    "schema": request.json_schema,
                    "strict": False,
                },
            }
        elif mode == "json_object":
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        if request.tools:
            specs = [(t.name, t.description, t.input_schema) for t in request.tools]
            specs += [
                (name, f"Return the {name} as this function's arguments.", schema)
                for name, schema in answer_fns.items()
            ]
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {"name": name, "description": text, "parameters": schema},
                }
                for name, text, schema in specs
            ]
            choice = request.tool_choice
            if answer_fns:
                # A real tool or the answer; once the turn's tool calls are used, the answer.
                answer = _function_name(request.schema_name)
                if choice in (None, "auto", "required"):
                    kwargs["tool_choice"] = "required"
                else:
                    named = answer if choice == "none" else choice
                    kwargs["tool_choice"] = {"type": "function", "function": {"name": named}}
            elif choice in ("auto", "required", "none"):
                kwargs["tool_choice"] = choice
            elif choice is not None:
                kwargs["tool_choice"] = {"type": "function", "function": {"name": choice}}
        key = _cache_key(request) if caps.cache == "key" else None
        if key:
            if self._takes_cache_key:
                kwargs["prompt_cache_key"] = key
            else:
                kwargs["extra_body"] = {"prompt_cache_key": key}
        return kwargs

    def _read(
        self, response: Any, request: CompletionRequest
    ) -> tuple[str, list[ToolCall], str | None, Usage]:
        choices = getattr(response, "choices", None) or []
        message = choices[0].message if choices else None
        calls = [
            ToolCall(c.id, c.function.name, _arguments(c.function.arguments, c.function.name))
            for c in (getattr(message, "tool_calls", None) or [])
            if getattr(c, "function", None) is not None
        ]
        content = (message.content if message else None) or ""
        finish = choices[0].finish_reason if choices else None
        return content, calls, finish, _usage(getattr(response, "usage", None))

    async def _consume(
        self,
        stream: Any,
        sink: DeltaSink,
        answer_name: str | None = None,
        answer_json: DeltaSink | None = None,
    ) -> tuple[str, list[ToolCall], str | None, Usage]:
        finish: str | None = None
        usage = Usage()
        partial: dict[int, dict[str, str]] = {}  # tool call index -> id, name, arguments
        try:
            async for chunk in stream:
                if getattr(chunk, "usage", None) is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices or []:
                    if choice.index != 0:
                        continue
                    delta = choice.delta
                    if delta is not None:
                        sink(delta.content)
                        for piece in delta.tool_calls or []:
                            call = partial.setdefault(
                                piece.index, {"id": "", "name": "", "arguments": ""}
                            )
                            call["id"] = piece.id or call["id"]
                            if piece.function is not None:
                                call["name"] = piece.function.name or call["name"]
                                call["arguments"] += piece.function.arguments or ""
                                if answer_name is not None and call["name"] == answer_name:
                                    # The answer function's JSON streams as an answer would.
                                    sink(piece.function.arguments)
                                    if answer_json is not None:
                                        answer_json(piece.function.arguments)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except (ProviderError, StreamCallbackError):
            raise
        except Exception as exc:
            raise sdk_stream_error_map(self.name, self._openai, exc) from None
        finally:
            await stream.close()
        if finish is None:
            raise ProviderTransientError("openai: stream ended before the answer was complete")
        calls = [
            ToolCall(c["id"], c["name"], _arguments(c["arguments"], c["name"]))
            for _, c in sorted(partial.items())
        ]
        return sink.text, calls, finish, usage

    async def aclose(self) -> None:
        """Close the SDK client's connections (before the event loop that opened them ends)."""
        await self._client.close()

    def _map_error(self, exc: Exception) -> ProviderError:
        return sdk_error_map(self.name, self._openai, exc)
