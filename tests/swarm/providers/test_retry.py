import email.utils

import pytest

from swarm.providers.base import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderResponseError,
    ProviderTimeout,
    ProviderTransientError,
)
from swarm.providers.retry import (
    MAX_RETRY_AFTER_S,
    RetryingProvider,
    error_for_status,
    parse_retry_after,
)
from tests.swarm.providers.conftest import ScriptedProvider, make_request


async def test_transient_errors_are_retried_until_success(sleep):
    inner = ScriptedProvider(
        ProviderTransientError("500", status=500), ProviderTimeout("slow"), "finally"
    )
    provider = RetryingProvider(inner, sleep=sleep, rng=lambda: 0.5)
    result = await provider.complete(make_request())
    assert result.text == "finally"
    assert result.attempts == 3
    assert len(inner.requests) == 3
    assert len(sleep.delays) == 2


@pytest.mark.parametrize(
    "error",
    [
        ProviderBadRequest("400", status=400),
        ProviderAuthError("401", status=401),
        ProviderResponseError("junk"),
    ],
)
async def test_permanent_errors_are_not_retried(sleep, error):
    inner = ScriptedProvider(error, "never reached")
    provider = RetryingProvider(inner, sleep=sleep)
    with pytest.raises(type(error)) as caught:
        await provider.complete(make_request())
    assert len(inner.requests) == 1
    assert sleep.delays == []
    assert caught.value.attempts == 1


async def test_last_error_is_raised_when_attempts_run_out(sleep):
    errors = [ProviderTransientError(f"overloaded {i}", status=529) for i in range(3)]
    inner = ScriptedProvider(*errors)
    provider = RetryingProvider(inner, max_attempts=3, sleep=sleep, rng=lambda: 0.0)
    with pytest.raises(ProviderTransientError, match="overloaded 2") as caught:
        await provider.complete(make_request())
    assert caught.value.attempts == 3
    assert len(inner.requests) == 3
    assert len(sleep.delays) == 2  # no wait after the final failure


async def test_backoff_is_full_jitter_exponential_and_capped(sleep):
    inner = ScriptedProvider(*[ProviderTransientError("busy", status=503) for _ in range(5)])
    provider = RetryingProvider(
        inner, max_attempts=6, base_delay=1.0, max_delay=5.0, sleep=sleep, rng=lambda: 1.0
    )
    await provider.complete(make_request())
    assert sleep.delays == [1.0, 2.0, 4.0, 5.0, 5.0]


async def test_jitter_scales_the_ceiling(sleep):
    inner = ScriptedProvider(
        ProviderTransientError("busy", status=503), ProviderTransientError("busy", status=503)
    )
    draws = iter([0.25, 0.75])
    provider = RetryingProvider(inner, base_delay=2.0, sleep=sleep, rng=lambda: next(draws))
    await provider.complete(make_request())
    assert sleep.delays == [pytest.approx(0.5), pytest.approx(3.0)]


async def test_retry_after_is_a_floor_on_the_wait(sleep):
    inner = ScriptedProvider(ProviderTransientError("429", status=429, retry_after=7.0), "ok")
    provider = RetryingProvider(inner, base_delay=0.1, sleep=sleep, rng=lambda: 1.0)
    await provider.complete(make_request())
    assert sleep.delays == [7.0]


async def test_retry_after_is_capped(sleep):
    inner = ScriptedProvider(ProviderTransientError("429", status=429, retry_after=3600.0), "ok")
    provider = RetryingProvider(inner, sleep=sleep, rng=lambda: 0.0)
    await provider.complete(make_request())
    assert sleep.delays == [MAX_RETRY_AFTER_S]


async def test_a_retry_after_holds_back_the_next_attempts_first_call(sleep):
    """A stage attempt that failed for another reason sends its calls again at once; the
    wait the server asked for holds for them too (same backend and model)."""
    refused = ProviderTransientError("429", status=429, retry_after=30.0)
    first = RetryingProvider(ScriptedProvider(refused), max_attempts=1, sleep=sleep)
    with pytest.raises(ProviderTransientError):
        await first.complete(make_request())
    assert sleep.delays == []
    again = RetryingProvider(ScriptedProvider("ok"), sleep=sleep)  # the next attempt's
    assert (await again.complete(make_request())).text == "ok"
    assert len(sleep.delays) == 1 and 29.0 < sleep.delays[0] <= 30.0
    other = RetryingProvider(ScriptedProvider("ok"), sleep=sleep)
    await other.complete(make_request(model="other/model"))
    assert len(sleep.delays) == 1  # another model is not held back


def test_max_attempts_must_be_positive():
    with pytest.raises(ValueError, match="max_attempts"):
        RetryingProvider(ScriptedProvider(), max_attempts=0)


def test_retry_after_seconds_and_http_date_are_parsed():
    now = 1_700_000_000.0
    assert parse_retry_after("3", now=now) == 3.0
    assert parse_retry_after("1.5", now=now) == 1.5
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "nan"])
def test_unreadable_retry_after_is_none(value):
    assert parse_retry_after(value) is None


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ProviderBadRequest),
        (401, ProviderAuthError),
        (403, ProviderAuthError),
        (429, ProviderTransientError),
        (500, ProviderTransientError),
        (503, ProviderTransientError),
        (529, ProviderTransientError),
    ],
)
def test_status_maps_onto_the_error_hierarchy(status, cls):
    error = error_for_status("anthropic", status, "details", {"retry-after": "2"})
    assert type(error) is cls
    assert error.status == status
    assert error.retryable == (cls is ProviderTransientError)
    if cls is ProviderTransientError:
        assert error.retry_after == 2.0


def test_status_error_message_is_redacted():
    error = error_for_status(
        "openai", 401, "Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz123"
    )
    assert "abcdefghijklmnop" not in str(error)
    assert "[API_KEY#1]" in str(error)
