"""The anthropic and openai backends, driving the official SDKs at the local fake server."""

import email.utils
import time

import pytest

from swarm.providers.anthropic_backend import AnthropicBackend, anthropic_model_id
from swarm.providers.base import (
    NoRouteError,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderResponseError,
    ProviderTimeout,
    ProviderTransientError,
)
from swarm.providers.openai_backend import OpenAIBackend
from swarm.providers.retry import RetryingProvider
from tests.fakes.llm_server import llama_cpp, malformed, not_json, ok, slow, status
from tests.swarm.providers.conftest import PLAN_SCHEMA, make_request

ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
OPENAI_KEY = "sk-test-openai-0123456789abcdef"


@pytest.fixture
async def anthropic_backend(fake_llm):
    env = {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "ANTHROPIC_BASE_URL": fake_llm.anthropic_base_url}
    backend = AnthropicBackend(env=env)
    yield backend
    await backend.aclose()


@pytest.fixture
async def openai_backend(fake_llm):
    env = {"OPENAI_API_KEY": OPENAI_KEY}
    backend = OpenAIBackend(env=env, base_url=fake_llm.openai_base_url)
    yield backend
    await backend.aclose()


def _key_header(request) -> str:
    return request.headers.get("x-api-key") or request.headers.get("authorization", "")


# --- Anthropic -----------------------------------------------------------------------


async def test_anthropic_text_answer(fake_llm, anthropic_backend):
    fake_llm.script(ok("plain words", input_tokens=21, output_tokens=9))
    result = await anthropic_backend.complete(make_request("claude-opus-4-1"))
    assert result.text == "plain words"
    assert result.parsed is None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (21, 9)
    assert result.provider == "anthropic"
    sent = fake_llm.requests[0]
    assert sent.path == "/v1/messages"
    assert ANTHROPIC_KEY in _key_header(sent)
    assert sent.body["system"] == "You are terse."
    assert sent.body["messages"] == [{"role": "user", "content": "hello"}]
    assert "tools" not in sent.body


async def test_anthropic_structured_output_is_a_forced_tool_call(fake_llm, anthropic_backend):
    answer = {"goals": ["ship it"], "confidence": 0.8}
    fake_llm.script(ok(answer))
    result = await anthropic_backend.complete(
        make_request("anthropic/claude-opus-4.1", schema=PLAN_SCHEMA)
    )
    assert result.parsed == answer
    sent = fake_llm.requests[0].body
    assert sent["model"] == "claude-opus-4-1"  # vendor prefix stripped, Anthropic's spelling
    assert sent["tools"] == [
        {
            "name": "plan",
            "description": "Return the plan as this tool's input.",
            "input_schema": PLAN_SCHEMA,
        }
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "plan"}


async def test_anthropic_without_the_tool_call_is_a_response_error(fake_llm, anthropic_backend):
    fake_llm.script(not_json("I would rather chat."))
    with pytest.raises(ProviderResponseError, match="tool call"):
        await anthropic_backend.complete(make_request(schema=PLAN_SCHEMA))


async def test_anthropic_malformed_body_is_retried(fake_llm, anthropic_backend, sleep):
    fake_llm.script(malformed(), ok("whole"))
    provider = RetryingProvider(anthropic_backend, base_delay=0.01, sleep=sleep)
    result = await provider.complete(make_request())
    assert (result.text, result.attempts, len(fake_llm.requests)) == ("whole", 2, 2)


async def test_anthropic_429_waits_retry_after_then_succeeds(fake_llm, anthropic_backend, sleep):
    fake_llm.script(status(429, retry_after=3), ok("done"))
    provider = RetryingProvider(anthropic_backend, base_delay=0.01, sleep=sleep, rng=lambda: 1.0)
    result = await provider.complete(make_request())
    assert result.text == "done"
    assert result.attempts == 2
    assert sleep.delays == [3.0]
    assert len(fake_llm.requests) == 2


async def test_anthropic_529_overloaded_is_retried(fake_llm, anthropic_backend, sleep):
    fake_llm.script(
        status(529, message="Overloaded"), status(529, message="Overloaded"), ok("phew")
    )
    provider = RetryingProvider(anthropic_backend, base_delay=0.01, sleep=sleep)
    result = await provider.complete(make_request())
    assert result.text == "phew"
    assert result.attempts == 3


async def test_anthropic_529_error_carries_status(fake_llm, anthropic_backend):
    fake_llm.script(status(529, message="Overloaded"))
    with pytest.raises(ProviderTransientError) as caught:
        await anthropic_backend.complete(make_request())
    assert caught.value.status == 529


@pytest.mark.parametrize(("code", "cls"), [(400, ProviderBadRequest), (401, ProviderAuthError)])
async def test_anthropic_400_and_401_are_never_retried(
    fake_llm, anthropic_backend, sleep, code, cls
):
    fake_llm.script(status(code), ok("should not be reached"))
    provider = RetryingProvider(anthropic_backend, base_delay=0.01, sleep=sleep)
    with pytest.raises(cls):
        await provider.complete(make_request())
    assert len(fake_llm.requests) == 1
    assert sleep.delays == []


async def test_anthropic_missing_key_names_the_variable():
    with pytest.raises(NoRouteError, match="MY_ANTHROPIC_KEY"):
        AnthropicBackend(env={}, key_env="MY_ANTHROPIC_KEY")


def test_anthropic_model_ids_are_normalised():
    assert anthropic_model_id("anthropic/claude-opus-4.1") == "claude-opus-4-1"
    assert anthropic_model_id("claude-3-5-haiku-20241022") == "claude-3-5-haiku-20241022"


# --- OpenAI-compatible ---------------------------------------------------------------


async def test_openai_structured_output(fake_llm, openai_backend):
    answer = {"goals": ["measure"], "confidence": 0.9}
    fake_llm.script(ok(answer, input_tokens=30, output_tokens=12))
    result = await openai_backend.complete(make_request("x-ai/grok-2-mini", schema=PLAN_SCHEMA))
    assert result.parsed == answer
    assert (result.usage.input_tokens, result.usage.output_tokens) == (30, 12)
    assert result.provider == "openai"
    sent = fake_llm.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent.body["model"] == "x-ai/grok-2-mini"  # a gateway keeps the full id
    assert sent.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "plan", "schema": PLAN_SCHEMA, "strict": False},
    }
    assert sent.body["messages"][0] == {"role": "system", "content": "You are terse."}
    assert sent.body["max_tokens"] == 256


async def test_openai_fenced_json_is_parsed(fake_llm, openai_backend):
    fake_llm.script(ok('```json\n{"goals": [], "confidence": 0.1}\n```'))
    result = await openai_backend.complete(make_request(schema=PLAN_SCHEMA))
    assert result.parsed == {"goals": [], "confidence": 0.1}


async def test_openai_prose_when_json_was_asked_is_a_response_error(fake_llm, openai_backend):
    fake_llm.script(not_json("Here are some thoughts instead."))
    with pytest.raises(ProviderResponseError, match="not JSON"):
        await openai_backend.complete(make_request(schema=PLAN_SCHEMA))


async def test_openai_malformed_body_is_a_transient_error(fake_llm, openai_backend):
    # A body that is not JSON is a garbled transfer, not the model's answer.
    fake_llm.script(malformed())
    with pytest.raises(ProviderTransientError, match="body is not JSON"):
        await openai_backend.complete(make_request())


# What servers say when they cannot take the request: a 400, a 422, and llama.cpp's 500
# wrapping a validation error. Sending it again would be refused again.
_PYDANTIC_500 = "1 validation error for CreateChatCompletionRequest\nInput should be 'text'"
REQUEST_ERRORS = {
    "400": (status(400), 400),
    "422": (status(422, message="messages: field required"), 422),
    "500-validation": (status(500, message=_PYDANTIC_500), 500),
}


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
@pytest.mark.parametrize("case", list(REQUEST_ERRORS))
async def test_request_errors_are_not_retried_as_transient(
    fake_llm, openai_backend, anthropic_backend, sleep, vendor, case
):
    scenario, code = REQUEST_ERRORS[case]
    fake_llm.script(scenario, ok("never reached"))
    backend = openai_backend if vendor == "openai" else anthropic_backend
    provider = RetryingProvider(backend, base_delay=0.01, sleep=sleep)
    with pytest.raises(ProviderBadRequest, match=f"HTTP {code}") as caught:
        await provider.complete(make_request(schema=PLAN_SCHEMA))
    assert (caught.value.status, caught.value.attempts) == (code, 1)
    assert len(fake_llm.requests) == 1 and sleep.delays == []


async def test_a_validation_error_wrapped_in_a_500_is_one_request(fake_llm, openai_backend, sleep):
    message = (
        "1 validation error for CreateChatCompletionRequest\nmessages.0.role\n  Input should be"
    )
    fake_llm.script(status(500, message=message), ok("never reached"))
    provider = RetryingProvider(openai_backend, base_delay=0.01, sleep=sleep)
    with pytest.raises(ProviderBadRequest, match="HTTP 500: .*validation error"):
        await provider.complete(make_request())
    assert len(fake_llm.requests) == 1 and sleep.delays == []


async def test_llama_cpp_refusing_json_schema_falls_back_at_once_not_by_retries(
    fake_llm, openai_backend, sleep
):
    fake_llm.script(llama_cpp(), llama_cpp(then=ok('{"goals": ["a"], "confidence": 0.5}')))
    provider = RetryingProvider(openai_backend, base_delay=0.01, sleep=sleep)
    result = await provider.complete(make_request(schema=PLAN_SCHEMA))
    assert result.parsed == {"goals": ["a"], "confidence": 0.5} and result.attempts == 1
    assert [r.body["response_format"]["type"] for r in fake_llm.requests] == [
        "json_schema",
        "json_object",
    ]
    assert sleep.delays == []


async def test_a_plain_500_is_still_retried(fake_llm, anthropic_backend, sleep):
    fake_llm.script(status(500, message="Internal server error"), ok("back"))
    provider = RetryingProvider(anthropic_backend, base_delay=0.01, sleep=sleep)
    assert (await provider.complete(make_request())).attempts == 2


async def test_openai_500_then_success(fake_llm, openai_backend, sleep):
    fake_llm.script(status(500), ok("recovered"))
    provider = RetryingProvider(openai_backend, base_delay=0.01, sleep=sleep)
    result = await provider.complete(make_request())
    assert result.text == "recovered"
    assert result.attempts == 2
    assert len(fake_llm.requests) == 2


async def test_openai_429_honours_retry_after(fake_llm, openai_backend, sleep):
    fake_llm.script(status(429, retry_after=1), ok("ok now"))
    provider = RetryingProvider(openai_backend, base_delay=0.01, sleep=sleep, rng=lambda: 0.0)
    result = await provider.complete(make_request())
    assert result.attempts == 2
    assert sleep.delays == [1.0]


async def test_openai_429_retry_after_as_http_date(fake_llm, openai_backend, sleep):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    fake_llm.script(status(429, retry_after=when), ok("ok now"))
    provider = RetryingProvider(openai_backend, base_delay=0.01, sleep=sleep, rng=lambda: 0.0)
    await provider.complete(make_request())
    assert 25.0 <= sleep.delays[0] <= 31.0


@pytest.mark.parametrize(("code", "cls"), [(400, ProviderBadRequest), (401, ProviderAuthError)])
async def test_openai_400_and_401_are_never_retried(fake_llm, openai_backend, sleep, code, cls):
    fake_llm.script(status(code), ok("should not be reached"))
    provider = RetryingProvider(openai_backend, base_delay=0.01, sleep=sleep)
    with pytest.raises(cls) as caught:
        await provider.complete(make_request())
    assert caught.value.status == code
    assert len(fake_llm.requests) == 1


async def test_openai_slow_answer_times_out_and_is_retried(fake_llm, openai_backend, sleep):
    fake_llm.script(slow(3.0), ok("fast this time"))
    provider = RetryingProvider(openai_backend, base_delay=0.01, sleep=sleep)
    result = await provider.complete(make_request(timeout=0.3))
    assert result.text == "fast this time"
    assert result.attempts == 2
    assert len(fake_llm.requests) == 2


async def test_anthropic_slow_answer_is_a_timeout(fake_llm, anthropic_backend):
    fake_llm.script(slow(3.0))
    with pytest.raises(ProviderTimeout):
        await anthropic_backend.complete(make_request(timeout=0.3))


async def test_connection_refused_is_transient():
    backend = OpenAIBackend(env={"OPENAI_API_KEY": OPENAI_KEY}, base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ProviderTransientError):
        await backend.complete(make_request(timeout=2.0))
    await backend.aclose()


async def test_openai_key_header_carries_the_key_for_portkey(fake_llm):
    backend = OpenAIBackend(
        env={"PORTKEY_API_KEY": "pk-test-123456"},
        key_env="PORTKEY_API_KEY",
        base_url=fake_llm.openai_base_url,
        key_header="x-portkey-api-key",
    )
    await backend.complete(make_request("anthropic/claude-opus-4.1"))
    await backend.aclose()
    assert fake_llm.requests[0].headers["x-portkey-api-key"] == "pk-test-123456"


async def test_openai_without_key_env_sends_no_real_key(fake_llm):
    backend = OpenAIBackend(
        env={"OPENAI_API_KEY": OPENAI_KEY}, key_env=None, base_url=fake_llm.openai_base_url
    )
    await backend.complete(make_request("llama3"))
    await backend.aclose()
    assert OPENAI_KEY not in fake_llm.requests[0].headers.get("authorization", "")


def test_openai_missing_key_names_the_variable():
    with pytest.raises(NoRouteError, match="OPENAI_API_KEY"):
        OpenAIBackend(env={})
