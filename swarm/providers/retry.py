"""Retries around any backend: transient errors only, full-jitter exponential backoff.

The SDKs' own retries are switched off (max_retries=0) so this is the one retry policy,
and the number of calls made is reported on the Completion (`attempts`) and, when every
attempt failed, on the raised error (`error.attempts`).

Streaming: each attempt's pieces reach the caller's on_delta stamped with the attempt's
number, and a retry that follows streamed pieces first sends StreamDelta(restart=True), so
a subscriber knows to drop the partial text of the failed attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email.utils
import json
import random
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from swarm.providers.base import (
    Completion,
    CompletionRequest,
    DeltaCallback,
    Provider,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
    ProviderTransientError,
    StreamDelta,
)
from swarm.redact import redact

# A server asking for more than this is treated as asking for this: a stage should block
# and tell a person, not sleep for an hour inside a worker.
MAX_RETRY_AFTER_S = 60.0

# A server's retry-after holds for every call of this process to that backend and model,
# not only for the retried call: a stage attempt that failed for another reason sends its
# calls again at once, and they must not land inside the wait the server asked for.
# (backend name, model) -> time.monotonic() before which nothing is sent.
_NOT_BEFORE: dict[tuple[str, str], float] = {}


class RetryingProvider:
    """Wraps `inner`; `complete` retries ProviderTransientError (429, 5xx, 529, timeouts,
    dropped connections, a body that is not JSON) up to `max_attempts` calls in all, never
    anything else (400, 401, 422, a 500 wrapping a validation error, unusable answers). Each wait is uniform in [0, min(max_delay, base_delay * 2**n)]
    (full jitter) and at least the server's retry-after, capped at 60 s."""

    def __init__(
        self,
        inner: Provider,
        *,
        max_attempts: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 20.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.inner = inner
        self.name = inner.name
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._rng = rng

    def delay_for(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed call number `attempt` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        delay = self._rng() * ceiling
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        return delay

    async def complete(self, request: CompletionRequest) -> Completion:
        attempt = 0
        stamp = _AttemptStamp(request.on_delta) if request.on_delta is not None else None
        key = (self.name, request.model)
        while True:
            attempt += 1
            call = request
            if stamp is not None:
                stamp.attempt = attempt
                call = dataclasses.replace(request, on_delta=stamp)
            # A retry below waits out its own error's retry-after; a first call, that of
            # any other call (a new attempt of the stage, a parallel debater).
            held = _NOT_BEFORE.get(key, 0.0) - time.monotonic() if attempt == 1 else 0.0
            if held > 0:
                await self._sleep(held)
            try:
                completion = await self.inner.complete(call)
            except ProviderError as exc:
                exc.attempts = attempt  # type: ignore[attr-defined]
                if exc.retry_after is not None and exc.retry_after > 0:
                    until = time.monotonic() + min(exc.retry_after, MAX_RETRY_AFTER_S)
                    _NOT_BEFORE[key] = max(_NOT_BEFORE.get(key, 0.0), until)
                if not exc.retryable or attempt >= self.max_attempts:
                    raise
                if stamp is not None:
                    stamp.restart(attempt + 1)
                await self._sleep(self.delay_for(attempt, exc.retry_after))
                continue
            return dataclasses.replace(completion, attempts=attempt)


class _AttemptStamp:
    """The on_delta a backend gets: stamps each piece with the attempt it belongs to."""

    def __init__(self, callback: DeltaCallback) -> None:
        self.callback = callback
        self.attempt = 1
        self.streamed = False

    def __call__(self, delta: StreamDelta) -> None:
        if delta.text:
            self.streamed = True
        self.callback(dataclasses.replace(delta, attempt=self.attempt))

    def restart(self, next_attempt: int) -> None:
        if self.streamed:
            self.streamed = False
            self.callback(StreamDelta("", attempt=next_attempt, restart=True))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `retry-after` header: delta-seconds or an HTTP date.

    None when absent or unreadable; a date in the past gives 0.0."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # NaN is unreadable
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


def error_for_status(
    backend: str, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> ProviderError:
    """The ProviderError subclass an HTTP status means, with retry-after parsed.

    `detail` is redacted here: vendors sometimes echo parts of the request back."""
    retry_after = parse_retry_after((headers or {}).get("retry-after"))
    message = f"{backend}: HTTP {status}: {redact(detail)[:300]}"
    if status in (401, 403):
        return ProviderAuthError(message, status=status)
    if status in (400, 404, 413, 422):
        return ProviderBadRequest(message, status=status)
    if status == 500 and _VALIDATION_ERROR.search(detail):
        # Servers built on pydantic (llama-cpp-python's, some gateways) answer a request
        # they cannot validate with a 500: the same request would be refused again.
        return ProviderBadRequest(message, status=status)
    if status in (408, 409, 429) or status >= 500:
        return ProviderTransientError(message, status=status, retry_after=retry_after)
    return ProviderError(message, status=status, retry_after=retry_after)


# What a request-validation error says inside a 500: pydantic's "1 validation error for
# X" / "Input should be ...", FastAPI's "field required", OpenAI-style error types.
_VALIDATION_ERROR = re.compile(
    r"\bvalidation errors? for\b|\bInput should be\b|\bfield required\b"
    r"|\binvalid_request_error\b|\bextra (?:fields|inputs) (?:are )?not permitted\b",
    re.IGNORECASE,
)


def _is_transport_error(exc: BaseException) -> bool:
    # The SDKs let the HTTP client's own errors out of a stream being read (a connection
    # reset, "incomplete chunked read"); both ship httpx2, some installs still httpx.
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)
        if module is not None and isinstance(exc, module.TransportError):
            return True
    return False


def sdk_stream_error_map(backend: str, sdk: Any, exc: Exception) -> ProviderError:
    """Map an exception raised while reading a stream that had started (HTTP 200 and
    events flowing): a timeout stays a ProviderTimeout; a dropped connection, an error
    event mid-stream or any other SDK error is a stream cut mid-answer, so transient."""
    if isinstance(exc, TimeoutError | sdk.APITimeoutError):
        return ProviderTimeout(f"{backend}: no answer within the timeout (stream)")
    if isinstance(exc, sdk.APIError) or _is_transport_error(exc):
        return ProviderTransientError(
            f"{backend}: stream cut mid-answer: {redact(str(exc) or type(exc).__name__)[:200]}"
        )
    return sdk_error_map(backend, sdk, exc)


def sdk_error_map(backend: str, sdk: Any, exc: Exception) -> ProviderError:
    """Map an exception of a Stainless-generated vendor SDK (anthropic, openai: the same
    exception classes) onto our hierarchy, so retries treat both vendors alike."""
    if isinstance(exc, TimeoutError | sdk.APITimeoutError):
        return ProviderTimeout(f"{backend}: no answer within the timeout")
    if isinstance(exc, sdk.APIConnectionError) or _is_transport_error(exc):
        return ProviderTransientError(f"{backend}: connection failed: {redact(str(exc))[:200]}")
    if isinstance(exc, sdk.APIStatusError):
        return error_for_status(backend, exc.status_code, str(exc), exc.response.headers)
    if isinstance(exc, json.JSONDecodeError):
        # A 200 whose body is not JSON at all: a garbled or truncated transfer (a proxy,
        # a dropped connection the client read as an end), not the model's answer, so the
        # same request may well succeed, as when a stream is cut.
        return ProviderTransientError(
            f"{backend}: the answer's body is not JSON: {redact(str(exc))[:200]}"
        )
    if isinstance(exc, sdk.APIResponseValidationError | ValueError):
        return ProviderResponseError(f"{backend}: unreadable answer: {redact(str(exc))[:200]}")
    return ProviderError(f"{backend}: {type(exc).__name__}: {redact(str(exc))[:200]}")
