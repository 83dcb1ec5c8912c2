"""OpenAI Chat Completions through the official `openai` SDK, at any compatible base URL:
OpenAI itself, OpenRouter, Portkey, AIMLAPI, Ollama, vLLM.

Structured output uses response_format json_schema with strict off (gateways and local
servers differ in what strict mode accepts); the content is then parsed as JSON,
tolerating ```json fences.
"""

from __future__ import annotations

import asyncio
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
from swarm.providers.jsontext import json_from_text
from swarm.providers.retry import sdk_error_map
from swarm.redact import redact

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Local servers (Ollama, vLLM) take no key, but the SDK refuses to start without one.
NO_KEY_PLACEHOLDER = "no-key-needed"
# OpenAI's reasoning models reject any temperature but the default.
_FIXED_TEMPERATURE = re.compile(r"^(?:o\d|gpt-5)")


class OpenAIBackend:
    """`complete` calls POST {base_url}/chat/completions once (no SDK retries) with
    `request.model` exactly as given (the router strips "openai/" for OpenAI itself and
    keeps vendor/model for gateways), and maps failures onto the ProviderError hierarchy.
    The key is read from `env[key_env]` when the backend is built (none for `key_env`
    None); `key_header` also sends it under that header (Portkey's x-portkey-api-key)."""

    name = "openai"

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        key_env: str | None = "OPENAI_API_KEY",
        base_url: str | None = None,
        key_header: str | None = None,
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
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            default_headers={key_header: api_key} if key_header and key_env else None,
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "timeout": request.timeout,
        }
        if self._is_openai:
            # OpenAI deprecated max_tokens; compatible servers mostly know only max_tokens.
            kwargs["max_completion_tokens"] = request.max_tokens
        else:
            kwargs["max_tokens"] = request.max_tokens
        if not (self._is_openai and _FIXED_TEMPERATURE.match(request.model)):
            kwargs["temperature"] = request.temperature
        if request.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": re.sub(r"[^A-Za-z0-9_-]", "_", request.schema_name)[:64] or "answer",
                    "schema": request.json_schema,
                    "strict": False,
                },
            }

        started = time.monotonic()
        try:
            async with asyncio.timeout(request.timeout + 1.0):
                response = await self._client.chat.completions.create(**kwargs)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._map_error(exc) from None
        latency = time.monotonic() - started

        choices = getattr(response, "choices", None) or []
        content = choices[0].message.content if choices and choices[0].message else None
        if not content:
            raise ProviderResponseError(f"openai: answer from {request.model} has no content")
        parsed: Any = None
        if request.json_schema is not None:
            try:
                parsed = json_from_text(content)
            except ValueError as exc:
                raise ProviderResponseError(f"openai: {redact(str(exc))}") from None
        usage = getattr(response, "usage", None)
        return Completion(
            text=content,
            parsed=parsed,
            usage=Usage(
                input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                output_tokens=getattr(usage, "completion_tokens", 0) or 0,
            ),
            cost_usd=0.0,
            latency_s=latency,
            provider=self.name,
            model=request.model,
        )

    async def aclose(self) -> None:
        """Close the SDK client's connections (before the event loop that opened them ends)."""
        await self._client.close()

    def _map_error(self, exc: Exception) -> ProviderError:
        return sdk_error_map(self.name, self._openai, exc)
