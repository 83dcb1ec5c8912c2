"""Provider rate limits in the call path (swarm/providers/limits.py): the Router waits for
a bucket before each call, against the local fake server; the in-process buckets. The
Redis buckets share these tests' expectations in tests/runs/test_sharedmem.py."""

from __future__ import annotations

import pytest

from swarm.providers import router_build
from swarm.providers.limits import (
    LocalBuckets,
    RateLimit,
    RateLimiter,
    rate_limits_parse,
    tokens_estimate,
)
from tests.fakes.llm_server import ok, status
from tests.swarm.providers.conftest import PLAN_SCHEMA, make_request


class Clock:
    """A clock that only the fake sleep moves: waits are exact and cost no time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _env(fake_llm) -> dict[str, str]:
    return {
        "PATH": "",
        "OPENAI_API_KEY": "sk-test-openai-0123456789abcdef",
        "OPENAI_BASE_URL": fake_llm.openai_base_url,
    }


def _limiter(clock: Clock, rules: dict, *, limit_local: bool = True) -> RateLimiter:
    return RateLimiter(
        rate_limits_parse(rules),
        LocalBuckets(clock=clock),
        limit_local=limit_local,
        sleep=clock.sleep,
    )


async def test_router_waits_for_the_bucket_before_the_call_that_would_exceed_rpm(fake_llm):
    clock = Clock()
    router = router_build(
        env=_env(fake_llm), rate_limiter=_limiter(clock, {"openai/*": {"rpm": 2}})
    )
    fake_llm.script(*(ok({"goals": ["x"], "confidence": 0.9}) for _ in range(3)))
    for _ in range(3):
        await router.complete(make_request("openai/gpt-4o", schema=PLAN_SCHEMA))
    await router.aclose()
    assert len(fake_llm.requests) == 3
    # Two go at once (a full bucket), the third waits for one request's refill: 30 s.
    assert sum(clock.slept) == pytest.approx(30.0)


async def test_every_retry_draws_from_the_bucket_too(fake_llm):
    clock = Clock()
    router = router_build(
        env=_env(fake_llm),
        rate_limiter=_limiter(clock, {"openai/gpt-4o": {"rpm": 1}}),
        retry_options={"sleep": clock.sleep, "base_delay": 0.0},
    )
    fake_llm.script(status(500), ok({"goals": ["x"], "confidence": 0.9}))
    result = await router.complete(make_request("openai/gpt-4o", schema=PLAN_SCHEMA))
    await router.aclose()
    assert result.attempts == 2
    assert sum(clock.slept) == pytest.approx(60.0)  # the retry waited a whole minute


async def test_token_limit_counts_the_request_estimate_and_max_tokens(fake_llm):
    clock = Clock()
    request = make_request("openai/gpt-4o", schema=PLAN_SCHEMA)
    cost = tokens_estimate(request)
    assert cost > request.max_tokens
    router = router_build(
        env=_env(fake_llm), rate_limiter=_limiter(clock, {"openai/*": {"tpm": cost * 2}})
    )
    fake_llm.script(*(ok({"goals": ["x"], "confidence": 0.9}) for _ in range(3)))
    for _ in range(3):
        await router.complete(request)
    await router.aclose()
    assert sum(clock.slept) == pytest.approx(30.0)


async def test_loopback_servers_and_unmatched_models_are_not_limited_by_default(fake_llm):
    clock = Clock()
    limiter = _limiter(clock, {"openai/*": {"rpm": 1}}, limit_local=False)
    router = router_build(env=_env(fake_llm), rate_limiter=limiter)
    fake_llm.script(*(ok({"goals": ["x"], "confidence": 0.9}) for _ in range(3)))
    for _ in range(3):
        await router.complete(make_request("openai/gpt-4o", schema=PLAN_SCHEMA))
    await router.aclose()
    assert clock.slept == []
    assert limiter.limit_for(
        backend="openai", base_url="https://api.openai.com/v1", model="openai/gpt-4o"
    )
    assert limiter.limit_for(backend="openai", base_url=None, model="anthropic/x") is None


async def test_the_offline_backend_is_never_limited():
    clock = Clock()
    limiter = _limiter(clock, {"*/*": {"rpm": 1}})
    router = router_build(env={}, backend_override="offline", rate_limiter=limiter)
    for _ in range(3):
        await router.complete(make_request("anthropic/claude-opus-4.1", schema=PLAN_SCHEMA))
    assert clock.slept == []
    assert limiter.buckets.fill() == []


def test_the_first_matching_glob_wins_and_each_model_has_its_own_bucket():
    clock = Clock()
    limiter = _limiter(clock, {"openai/gpt-4o": {"rpm": 1}, "openai/*": {"rpm": 5, "tpm": 9}})
    url = "https://api.openai.com/v1"
    assert limiter.limit_for(backend="openai", base_url=url, model="openai/gpt-4o") == RateLimit(1)
    assert limiter.limit_for(backend="openai", base_url=url, model="openai/o3") == RateLimit(5, 9)
    buckets = limiter.buckets
    assert buckets.take("openai:openai/gpt-4o", RateLimit(1), 0) == 0.0
    assert buckets.take("openai:openai/o3", RateLimit(1), 0) == 0.0  # not the same bucket


@pytest.mark.parametrize(
    "rules, message",
    [
        ({"openai/*": {"rpm": 0}}, "requests must be a whole number >= 1"),
        ({"openai/*": {"rps": 3}}, "must have rpm and/or tpm"),
        ({"openai/*": 50}, "must have rpm and/or tpm"),
    ],
)
def test_bad_limits_are_refused_with_what_is_wrong(rules, message):
    with pytest.raises(ValueError, match=message):
        rate_limits_parse(rules)


# --- the in-process buckets --------------------------------------------------------------------


def test_local_bucket_gives_its_capacity_then_says_how_long_to_wait():
    clock = Clock()
    buckets = LocalBuckets(clock=clock)
    limit = RateLimit(requests=4, tokens=100, period_s=1.0)
    assert [buckets.take("k", limit, 10) for _ in range(4)] == [0.0] * 4
    assert buckets.take("k", limit, 10) == pytest.approx(0.25)
    clock.now += 0.25
    assert buckets.take("k", limit, 10) == 0.0
    # Tokens: 50 left; 80 more need 0.3 s of refill, and nothing is taken meanwhile.
    clock.now += 1.0
    assert buckets.take("k", limit, 50) == 0.0
    assert buckets.take("k", limit, 80) == pytest.approx(0.3)
    (fill,) = buckets.fill()
    assert (fill.requests, fill.tokens) == (pytest.approx(3.0), pytest.approx(50.0))


def test_a_call_larger_than_the_bucket_waits_for_a_full_bucket_not_forever():
    clock = Clock()
    buckets = LocalBuckets(clock=clock)
    limit = RateLimit(tokens=100, period_s=1.0)
    assert buckets.take("k", limit, 500) == 0.0
    assert buckets.take("k", limit, 500) == pytest.approx(1.0)
