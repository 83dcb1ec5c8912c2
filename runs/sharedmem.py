"""Short-lived memory shared by every worker of this installation (issue 10 §4): the
repository facts of a commit, the index's status, the providers' rate-limit buckets.

One small interface, two homes: Redis in services mode (REDIS_URL set: every worker
shares it) and an in-process equivalent in embedded mode. Every key lives under the
installation's prefix (TEKTON_REDIS_PREFIX, default "<TEKTON_NAMESPACE>:") and has a TTL.
Nothing here is the record of anything: losing it costs computing again, so a Redis that
is down is logged (once a minute) and answered as a miss, never raised.

    memory = shared_memory()
    memory.set_json("facts:...", {...}, ttl_s=3600)
    memory.get_json("facts:...")          # None when missing, expired or Redis is down
    memory.add_json("index:...", {...}, ttl_s=120)   # SET NX: False when someone has it
    memory.buckets.take("anthropic:anthropic/claude-opus-4.1", limit, tokens=5000)
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from typing import Any

from django.conf import settings

from swarm.providers.limits import (
    BucketFill,
    LocalBuckets,
    RateLimit,
    RateLimiter,
    rate_limits_parse,
)
from swarm.redact import redact

logger = logging.getLogger("tekton.runs.sharedmem")

WARN_EVERY_S = 60.0
BUCKET_PREFIX = "bucket:"

# One atomic token-bucket draw on the server's clock (every worker agrees on the time).
# Two dimensions (requests, tokens): both are there and both are taken, or nothing is and
# the answer is the seconds to wait. A capacity of 0 switches a dimension off. Floats go
# back as a string: Redis would truncate a Lua number to an integer. The key expires
# once a bucket would be full again anyway, so a missing key means a full bucket.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rcap, tcap, period = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'r', 't', 'at')
local at = tonumber(b[3]) or now
local elapsed = math.max(0, now - at)
local r = math.min(rcap, (tonumber(b[1]) or rcap) + elapsed * rcap / period)
local tk = math.min(tcap, (tonumber(b[2]) or tcap) + elapsed * tcap / period)
local wait = 0
if rcap > 0 and r < 1 - 1e-6 then wait = (1 - r) * period / rcap end
if tcap > 0 and tk < cost - 1e-6 then wait = math.max(wait, (cost - tk) * period / tcap) end
if wait == 0 then
  if rcap > 0 then r = r - 1 end
  if tcap > 0 then tk = tk - cost end
end
redis.call('HSET', KEYS[1], 'r', r, 't', tk, 'at', now, 'rc', rcap, 'tc', tcap, 'p', period)
redis.call('PEXPIRE', KEYS[1], math.ceil(period * 1000) + 1000)
return tostring(wait)
"""

# What the buckets hold now, refilled to the server's clock; changes nothing.
_FILL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i, key in ipairs(KEYS) do
  local b = redis.call('HMGET', key, 'r', 't', 'at', 'rc', 'tc', 'p')
  if b[3] then
    local rcap, tcap, period = tonumber(b[4]), tonumber(b[5]), tonumber(b[6])
    local elapsed = math.max(0, now - tonumber(b[3]))
    local r = math.min(rcap, tonumber(b[1]) + elapsed * rcap / period)
    local tk = math.min(tcap, tonumber(b[2]) + elapsed * tcap / period)
    table.insert(out, {key, tostring(r), tostring(tk), tostring(rcap), tostring(tcap), tostring(period)})
  end
end
return out
"""


class _Warner:
    """Logs a Redis failure at most once a minute per process."""

    def __init__(self) -> None:
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, what: str, exc: Exception) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < WARN_EVERY_S:
                return
            self._last = now
        logger.warning("shared memory (Redis) unavailable, %s: %s", what, redact(str(exc))[:300])


class RedisBuckets:
    """Buckets (swarm.providers.limits) in Redis: one hash per bucket, drawn by a Lua
    script so every worker's draws are atomic. A Redis that is down limits nothing."""

    def __init__(self, client: Any, prefix: str, warn: _Warner) -> None:
        self._client = client
        self._prefix = prefix
        self._warn = warn
        self._take = client.register_script(_TAKE)
        self._fill = client.register_script(_FILL)

    def take(self, key: str, limit: RateLimit, tokens: int) -> float:
        import redis

        tokens = min(max(tokens, 0), limit.tokens or 0)
        try:
            wait = self._take(
                keys=[self._prefix + BUCKET_PREFIX + key],
                args=[limit.requests or 0, limit.tokens or 0, limit.period_s, tokens],
            )
        except redis.RedisError as exc:
            self._warn("calls go out without rate limiting", exc)
            return 0.0
        return float(wait)

    def fill(self) -> list[BucketFill]:
        import redis

        start = len(self._prefix + BUCKET_PREFIX)
        try:
            keys = sorted(self._client.scan_iter(match=self._prefix + BUCKET_PREFIX + "*"))
            rows = self._fill(keys=keys) if keys else []
        except redis.RedisError as exc:
            self._warn("bucket fill unknown", exc)
            return []
        out = []
        for key, r, t, rc, tc, period in rows:
            rcap, tcap = float(rc), float(tc)
            limit = RateLimit(
                requests=int(rcap) or None, tokens=int(tcap) or None, period_s=float(period)
            )
            out.append(
                BucketFill(
                    key.decode()[start:],
                    float(r) if rcap else None,
                    float(t) if tcap else None,
                    limit,
                )
            )
        return out


class RedisMemory:
    """The shared memory in Redis, every key under `prefix`."""

    kind = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self.prefix = prefix
        # Short timeouts: a stage must not hang on a cache. A retry after a failure is
        # cheap (one connect attempt), so no circuit breaker beyond the quiet log.
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=1.0, retry_on_timeout=False
        )
        self._warn = _Warner()
        self.buckets = RedisBuckets(self._client, prefix, self._warn)

    def get_json(self, key: str) -> Any | None:
        import redis

        try:
            raw = self._client.get(self.prefix + key)
        except redis.RedisError as exc:
            self._warn("reading it as a miss", exc)
            return None
        return None if raw is None else json.loads(raw)

    def set_json(self, key: str, value: Any, *, ttl_s: float) -> None:
        import redis

        try:
            self._client.set(self.prefix + key, json.dumps(value), px=int(ttl_s * 1000))
        except redis.RedisError as exc:
            self._warn("not kept", exc)

    def add_json(self, key: str, value: Any, *, ttl_s: float) -> bool:
        """Set `key` unless it exists; True when this call set it (or Redis is down:
        then everyone goes ahead, as without shared memory)."""
        import redis

        try:
            return bool(
                self._client.set(
                    self.prefix + key, json.dumps(value), px=int(ttl_s * 1000), nx=True
                )
            )
        except redis.RedisError as exc:
            self._warn("going ahead without the claim", exc)
            return True

    def find_json(self, key_prefix: str) -> list[Any]:
        """The values of the keys starting with `key_prefix` (few: a status listing)."""
        import redis

        try:
            keys = list(self._client.scan_iter(match=self.prefix + key_prefix + "*", count=500))
            raw = self._client.mget(keys) if keys else []
        except redis.RedisError as exc:
            self._warn("listing nothing", exc)
            return []
        return [json.loads(r) for r in raw if r is not None]

    def delete(self, key: str) -> None:
        import redis

        try:
            self._client.delete(self.prefix + key)
        except redis.RedisError as exc:
            self._warn("not deleted (it expires)", exc)

    def close(self) -> None:
        self._client.close()


class LocalMemory:
    """The in-process equivalent (embedded mode): a dict with expiry times."""

    kind = "local"

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._data: dict[str, tuple[float, str]] = {}
        self.buckets = LocalBuckets()

    def _live(self, key: str, now: float) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= now:
            del self._data[key]
            return None
        return item[1]

    def get_json(self, key: str) -> Any | None:
        with self._lock:
            raw = self._live(self.prefix + key, time.monotonic())
        return None if raw is None else json.loads(raw)

    def set_json(self, key: str, value: Any, *, ttl_s: float) -> None:
        with self._lock:
            self._data[self.prefix + key] = (time.monotonic() + ttl_s, json.dumps(value))
            if len(self._data) > 4096:  # drop what expired; bounded in a long-lived process
                now = time.monotonic()
                self._data = {k: v for k, v in self._data.items() if v[0] > now}

    def add_json(self, key: str, value: Any, *, ttl_s: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._live(self.prefix + key, now) is not None:
                return False
            self._data[self.prefix + key] = (now + ttl_s, json.dumps(value))
            return True

    def find_json(self, key_prefix: str) -> list[Any]:
        with self._lock:
            now = time.monotonic()
            full = self.prefix + key_prefix
            keys = [k for k in self._data if k.startswith(full)]
            raw = [r for k in keys if (r := self._live(k, now)) is not None]
        return [json.loads(r) for r in raw]

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(self.prefix + key, None)

    def close(self) -> None:
        pass


SharedMemory = RedisMemory | LocalMemory


@functools.cache
def _memory_for(url: str, prefix: str) -> SharedMemory:
    return RedisMemory(url, prefix) if url else LocalMemory(prefix)


def shared_memory() -> SharedMemory:
    """This process's shared memory: Redis when REDIS_URL is set, else in-process."""
    return _memory_for(settings.REDIS_URL or "", settings.TEKTON_REDIS_PREFIX)


def rate_limiter_get() -> RateLimiter | None:
    """The provider rate limits (TEKTON_RATE_LIMITS) over this installation's buckets, or
    None when no limit is configured."""
    rules = rate_limits_parse(settings.TEKTON_RATE_LIMITS)
    if not rules:
        return None
    return RateLimiter(rules, shared_memory().buckets, limit_local=settings.TEKTON_RATE_LIMIT_LOCAL)
