"""Per-provider rate limits shared by every caller: a token bucket per backend and model.

The Router asks a RateLimiter before each call (each retry too), so a hundred runs on
many workers queue for a vendor's requests/min and tokens/min instead of stampeding it
into 429s. Where the buckets live is the caller's choice, behind `Buckets`: runs/
provides one in Redis (shared by every worker) and LocalBuckets here is the in-process
equivalent (embedded mode, tests). The offline and replay backends are never limited, and
neither is a server on loopback (the local fake servers) unless `limit_local` is set.

A bucket holds up to one period's worth (`requests`, `tokens`) and refills continuously
at that rate, as the vendors' own limiters do; a call takes one request and its
estimated tokens (input estimate + max_tokens, which is what the vendors count before
the answer exists), or waits until both are there. Nothing is taken while it waits.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from swarm.providers.base import Completion, CompletionRequest, Provider

logger = logging.getLogger("tekton.swarm.providers.limits")

UNLIMITED_BACKENDS = ("offline", "replay")
# Longest single sleep while waiting for a bucket: waking up re-asks the bucket, so a
# cancelled stage stops waiting promptly and a freed bucket is seen soon.
MAX_SLEEP_S = 5.0
EPSILON = 1e-6


@dataclass(frozen=True)
class RateLimit:
    """At most `requests` calls and `tokens` tokens per `period_s` (None: no limit on
    that dimension)."""

    requests: int | None = None
    tokens: int | None = None
    period_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("requests", "tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.period_s <= 0:
            raise ValueError(f"period_s must be > 0, got {self.period_s!r}")

    def describe(self) -> str:
        unit = "min" if self.period_s == 60.0 else f"{self.period_s:g} s"
        parts = []
        if self.requests:
            parts.append(f"{self.requests} requests/{unit}")
        if self.tokens:
            parts.append(f"{self.tokens} tokens/{unit}")
        return ", ".join(parts) or "no limit"


@dataclass(frozen=True)
class BucketFill:
    """What a bucket holds now (None: that dimension is not limited)."""

    key: str
    requests: float | None
    tokens: float | None
    limit: RateLimit


def rate_limits_parse(data: Mapping[str, Any] | None) -> tuple[tuple[str, RateLimit], ...]:
    """TEKTON_RATE_LIMITS, parsed: a mapping {model glob: {"rpm": n, "tpm": n}}, e.g.
    `{"anthropic/*": {"rpm": 50, "tpm": 400000}, "openai/gpt-4.1": {"rpm": 500}}`.
    Globs match the profile's model id; the first matching entry wins, and each model
    it matches gets a bucket of its own. Raises ValueError saying what is wrong."""
    rules = []
    for glob, spec in (data or {}).items():
        if not isinstance(spec, Mapping) or not spec or set(spec) - {"rpm", "tpm"}:
            raise ValueError(f"rate limit {glob!r} must have rpm and/or tpm, got {spec!r}")
        try:
            limit = RateLimit(requests=spec.get("rpm"), tokens=spec.get("tpm"))
        except ValueError as exc:
            raise ValueError(f"rate limit {glob!r}: {exc}") from None
        rules.append((str(glob), limit))
    return tuple(rules)


class Buckets(Protocol):
    """Where buckets live. `take` either takes one request and `tokens` from the bucket
    `key` and returns 0.0, or takes nothing and returns the seconds to wait before asking
    again. Must be atomic across every caller that shares the buckets, and must not raise
    for its own outage (answer 0.0: no limiting beats no calls)."""

    def take(self, key: str, limit: RateLimit, tokens: int) -> float: ...

    def fill(self) -> list[BucketFill]: ...


class LocalBuckets:
    """The in-process Buckets: the same token buckets under a lock, on the monotonic
    clock. Shared by the threads of one process only."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float, float, RateLimit]] = {}

    def _refilled(self, key: str, limit: RateLimit, now: float) -> tuple[float, float]:
        cap_r, cap_t = float(limit.requests or 0), float(limit.tokens or 0)
        r, t, at, _ = self._state.get(key, (cap_r, cap_t, now, limit))
        elapsed = max(0.0, now - at)
        r = min(cap_r, r + elapsed * cap_r / limit.period_s)
        t = min(cap_t, t + elapsed * cap_t / limit.period_s)
        return r, t

    def take(self, key: str, limit: RateLimit, tokens: int) -> float:
        tokens = min(max(tokens, 0), limit.tokens or 0)
        with self._lock:
            now = self._clock()
            r, t = self._refilled(key, limit, now)
            wait = 0.0
            # EPSILON: a refill short by a rounding error is a full one (else a wait
            # smaller than the clock's resolution would never end).
            if limit.requests and r < 1 - EPSILON:
                wait = (1 - r) * limit.period_s / limit.requests
            if limit.tokens and t < tokens - EPSILON:
                wait = max(wait, (tokens - t) * limit.period_s / limit.tokens)
            if wait == 0.0:
                r -= 1 if limit.requests else 0
                t -= tokens
            self._state[key] = (r, t, now, limit)
            return wait

    def fill(self) -> list[BucketFill]:
        with self._lock:
            now = self._clock()
            out = []
            for key, (*_, limit) in sorted(self._state.items()):
                r, t = self._refilled(key, limit, now)
                out.append(
                    BucketFill(
                        key,
                        r if limit.requests else None,
                        t if limit.tokens else None,
                        limit,
                    )
                )
            return out


def is_loopback_url(url: str | None) -> bool:
    host = urlsplit(url).hostname if url else None
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tokens_estimate(request: CompletionRequest) -> int:
    """What a vendor's limiter counts for the request before it answers: the input (about
    four characters a token) plus max_tokens."""
    chars = sum(len(m.text) + sum(len(json.dumps(c.arguments)) for c in m.tool_calls)
                + sum(len(r.content) for r in m.tool_results) for m in request.messages)  # fmt: skip
    chars += sum(len(t.description) + len(json.dumps(t.input_schema)) for t in request.tools)
    if request.json_schema:
        chars += len(json.dumps(request.json_schema))
    return chars // 4 + 1 + request.max_tokens


class RateLimiter:
    """The limits (`rules`, from rate_limits_parse) over `buckets`. `acquire` waits until
    the bucket of (backend, model) lets a call through; a model no rule matches, the
    offline and replay backends and (unless `limit_local`) a loopback server are never
    held back."""

    def __init__(
        self,
        rules: tuple[tuple[str, RateLimit], ...],
        buckets: Buckets,
        *,
        limit_local: bool = False,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.rules = rules
        self.buckets = buckets
        self.limit_local = limit_local
        self._sleep = sleep

    def limit_for(self, *, backend: str, base_url: str | None, model: str) -> RateLimit | None:
        if backend in UNLIMITED_BACKENDS:
            return None
        if not self.limit_local and is_loopback_url(base_url):
            return None
        for glob, limit in self.rules:
            if fnmatch.fnmatchcase(model, glob):
                return limit
        return None

    async def acquire(self, *, key: str, limit: RateLimit, tokens: int) -> float:
        """Wait until the bucket `key` gives one request and `tokens`; returns the
        seconds waited."""
        waited = 0.0
        while True:
            wait = self.buckets.take(key, limit, tokens)
            if wait <= 0:
                if waited:
                    logger.info("rate limit %s: waited %.1f s", key, waited)
                return waited
            step = min(wait, MAX_SLEEP_S)
            await self._sleep(step)
            waited += step


def bucket_key(backend: str, model: str) -> str:
    return f"{backend}:{model}"


class LimitedProvider:
    """Asks the limiter before each call of `inner` (put it inside the retries, so every
    attempt is counted, as the vendor counts it)."""

    def __init__(self, inner: Provider, limiter: RateLimiter, *, limit: RateLimit, key: str):
        self.inner = inner
        self.name = inner.name
        self.limiter = limiter
        self.limit = limit
        self.key = key

    async def complete(self, request: CompletionRequest) -> Completion:
        await self.limiter.acquire(key=self.key, limit=self.limit, tokens=tokens_estimate(request))
        return await self.inner.complete(request)


def limits_describe(rules: tuple[tuple[str, RateLimit], ...]) -> Mapping[str, Any]:
    return {glob: limit.describe() for glob, limit in rules}
