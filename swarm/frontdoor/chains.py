"""Model chains per intent, and completing a request along one: the next model is tried
when one fails after the Router's own retries (429/5xx/timeouts retried there), or has no
route here; never after a 400 or 401/403, which are the request's (or the key's) fault
and would fail the same way on the next model."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarm.frontdoor.intent import INTENTS
from swarm.providers.base import (
    Completion,
    CompletionRequest,
    NoRouteError,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
)
from swarm.redact import redact

DEFAULT_CHAINS: dict[str, tuple[str, ...]] = {
    "code": ("anthropic/claude-sonnet-4.6", "openai/gpt-4.1", "openai/gpt-4o-mini"),
    "design": ("anthropic/claude-opus-4.6", "openai/gpt-5", "anthropic/claude-sonnet-4.6"),
    "analyze": ("anthropic/claude-sonnet-4.6", "openai/gpt-4.1"),
    "search": ("openai/gpt-4.1-mini", "anthropic/claude-haiku-4.5"),
    "deep": ("anthropic/claude-opus-4.6", "openai/gpt-5", "anthropic/claude-sonnet-4.6"),
    "fast": ("anthropic/claude-haiku-4.5", "openai/gpt-4o-mini"),
    "general": ("anthropic/claude-sonnet-4.6", "openai/gpt-4o"),
}


def chains_merge(overrides: Mapping[str, Any] | None) -> dict[str, tuple[str, ...]]:
    """DEFAULT_CHAINS with `overrides` ({intent: [model, ...]}, e.g. from settings) on top.
    Raises ValueError for an unknown intent or a chain that is not a list of model ids."""
    chains = dict(DEFAULT_CHAINS)
    for intent, models in (overrides or {}).items():
        if intent not in INTENTS:
            raise ValueError(f"chain for unknown intent {intent!r}; intents: {', '.join(INTENTS)}")
        if (
            not isinstance(models, list | tuple)
            or not models
            or not all(isinstance(m, str) and "/" in m for m in models)
        ):
            raise ValueError(f"chain for {intent!r} must be a list of vendor/model ids")
        chains[intent] = tuple(models)
    return chains


@dataclass
class Attempt:
    """One model of the chain: what answered or why it was left."""

    model: str
    outcome: str  # "ok" | "failed" | "no-route" | "stopped"
    detail: str = ""
    calls: int = 0  # calls made, retries included
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ChainResult:
    completion: Completion | None
    attempts: list[Attempt] = field(default_factory=list)
    error: ProviderError | None = None  # the last error, when nothing answered


class Completer:
    """What answers a request: a Router (or anything with an async `complete`)."""

    async def complete(self, request: CompletionRequest) -> Completion: ...


async def chain_complete(
    completer: Completer,
    request: CompletionRequest,
    chain: Sequence[str],
    *,
    on_attempt: Callable[[Attempt], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> ChainResult:
    """Send `request` to each model of `chain` in turn until one answers. Stops at once on
    a ProviderBadRequest or ProviderAuthError. `on_attempt` hears of each model tried as
    soon as it is done (to print and journal why the chain moved on); `on_start` of each
    model as it is tried."""
    result = ChainResult(None)
    for model in chain:
        if on_start is not None:
            on_start(model)
        started = time.monotonic()
        try:
            completion = await completer.complete(dataclasses.replace(request, model=model))
        except (ProviderBadRequest, ProviderAuthError) as exc:
            attempt = Attempt(model, "stopped", _line(exc), getattr(exc, "attempts", 1))
            result.error = exc
        except NoRouteError as exc:
            attempt = Attempt(model, "no-route", _line(exc), 0)
            result.error = exc
        except ProviderError as exc:
            attempt = Attempt(model, "failed", _line(exc), getattr(exc, "attempts", 1))
            result.error = exc
        else:
            attempt = Attempt(model, "ok", completion.provider, completion.attempts)
            result.completion, result.error = completion, None
        attempt.duration_s = round(time.monotonic() - started, 3)
        result.attempts.append(attempt)
        if on_attempt is not None:
            on_attempt(attempt)
        if attempt.outcome in ("ok", "stopped"):
            break
    return result


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(text)[:300]
