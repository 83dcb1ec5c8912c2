"""The one async interface every LLM backend speaks, and the errors it raises.

A backend turns a CompletionRequest into a Completion. Retries, routing and recording
live around backends (swarm.providers.retry, .router, .replay), not inside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class CompletionRequest:
    model: str  # the vendor/model id as the profile names it, e.g. "anthropic/claude-opus-4.1"
    messages: tuple[Message, ...]
    json_schema: dict[str, Any] | None = None  # ask for JSON matching this schema
    schema_name: str = "answer"
    max_tokens: int = 4096
    temperature: float = 0.2
    timeout: float = 120.0
    # Who is asking, so offline/replay backends and recordings can key on it.
    # e.g. {"stage": "plan", "role": "skeptic", "round": 1, "run_id": 7}
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    parsed: Any | None  # the JSON the text holds, when the request asked for JSON and it parsed
    usage: Usage
    cost_usd: float
    latency_s: float
    provider: str  # backend name: "offline", "anthropic", ...
    model: str
    attempts: int = 1  # calls made, retries included


class ProviderError(Exception):
    """A backend failed. `retryable` says whether the same request may succeed later."""

    retryable = False

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ProviderTransientError(ProviderError):
    """429, 5xx, 529, a timeout or a dropped connection: worth retrying."""

    retryable = True


class ProviderTimeout(ProviderTransientError):
    """The backend did not answer within the request's timeout."""


class ProviderAuthError(ProviderError):
    """401 / 403 or a missing key: retrying cannot help."""


class ProviderBadRequest(ProviderError):
    """400: the request itself is wrong."""


class ProviderResponseError(ProviderError):
    """The backend answered, but with something that is not a usable completion."""


class NoRouteError(ProviderError):
    """No backend serves this model id, or its key variable is not set."""


@runtime_checkable
class Provider(Protocol):
    name: str

    async def complete(self, request: CompletionRequest) -> Completion: ...
