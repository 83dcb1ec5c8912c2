"""Anthropic Messages API through the official `anthropic` SDK.

Structured output is a forced tool call: the schema becomes the only tool's input_schema
and tool_choice names it, so the answer arrives as an already-parsed tool input.
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
    Completion,
    CompletionRequest,
    NoRouteError,
    ProviderError,
    ProviderResponseError,
    Usage,
)
from swarm.providers.retry import sdk_error_map

DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
_TOOL_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")


def anthropic_model_id(model: str) -> str:
    """The id Anthropic's API knows: no "anthropic/" prefix, and "4.1" spelled "4-1"
    (gateways such as OpenRouter write versions with dots, Anthropic never does)."""
    if model.startswith("anthropic/"):
        model = model[len("anthropic/") :]
    return re.sub(r"(\d)\.(\d)", r"\1-\2", model)


class AnthropicBackend:
    """`complete` calls POST /v1/messages once (no SDK retries) and maps failures onto the
    ProviderError hierarchy. The key is read from `env[key_env]` when the backend is
    built and lives only inside the SDK client."""

    name = "anthropic"

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        key_env: str = DEFAULT_KEY_ENV,
        base_url: str | None = None,
    ) -> None:
        import anthropic  # deferred: importing the SDK costs about a second

        env = os.environ if env is None else env
        api_key = env.get(key_env)
        if not api_key:
            raise NoRouteError(f"the anthropic backend needs env var {key_env} (not set)")
        self._anthropic = anthropic
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or env.get("ANTHROPIC_BASE_URL") or None,
            max_retries=0,
        )
        # Recent SDK releases dropped `temperature` from messages.create (newer models fix
        # it); send it only to an SDK that still takes it.
        create = anthropic.resources.messages.AsyncMessages.create
        self._takes_temperature = "temperature" in inspect.signature(create).parameters

    async def complete(self, request: CompletionRequest) -> Completion:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = [
            {"role": m.role, "content": m.content} for m in request.messages if m.role != "system"
        ]
        kwargs: dict[str, Any] = {
            "model": anthropic_model_id(request.model),
            "messages": messages,
            "max_tokens": request.max_tokens,
            "timeout": request.timeout,
        }
        if self._takes_temperature:
            kwargs["temperature"] = request.temperature
        if system:
            kwargs["system"] = system
        tool_name = _TOOL_NAME_BAD.sub("_", request.schema_name)[:64] or "answer"
        if request.json_schema is not None:
            kwargs["tools"] = [
                {
                    "name": tool_name,
                    "description": f"Return the {request.schema_name} as this tool's input.",
                    "input_schema": request.json_schema,
                }
            ]
            kwargs["tool_choice"] = {"type": "tool", "name": tool_name}

        started = time.monotonic()
        try:
            # The SDK timeout bounds each read; this bounds the whole call.
            async with asyncio.timeout(request.timeout + 1.0):
                message = await self._client.messages.create(**kwargs)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._map_error(exc) from None
        latency = time.monotonic() - started

        usage = Usage(
            input_tokens=getattr(message.usage, "input_tokens", 0) or 0,
            output_tokens=getattr(message.usage, "output_tokens", 0) or 0,
        )
        blocks = list(message.content or [])
        if request.json_schema is not None:
            tool_inputs = [b.input for b in blocks if getattr(b, "type", "") == "tool_use"]
            if not tool_inputs or not isinstance(tool_inputs[0], dict):
                raise ProviderResponseError(
                    f"anthropic: asked for a {tool_name} tool call, got none "
                    f"(stop_reason {message.stop_reason})"
                )
            parsed: Any = tool_inputs[0]
            text = json.dumps(parsed, ensure_ascii=False)
        else:
            text = "".join(
                getattr(b, "text", "") for b in blocks if getattr(b, "type", "") == "text"
            )
            if not text:
                raise ProviderResponseError(
                    f"anthropic: answer has no text (stop_reason {message.stop_reason})"
                )
            parsed = None
        return Completion(
            text=text,
            parsed=parsed,
            usage=usage,
            cost_usd=0.0,
            latency_s=latency,
            provider=self.name,
            model=request.model,
        )

    async def aclose(self) -> None:
        """Close the SDK client's connections (before the event loop that opened them ends)."""
        await self._client.close()

    def _map_error(self, exc: Exception) -> ProviderError:
        return sdk_error_map(self.name, self._anthropic, exc)
