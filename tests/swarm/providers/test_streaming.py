"""Streaming through both official SDKs at the fake server (SSE in each vendor's format):
deltas in order that join to the answer, cut streams that raise a retryable error, retries
a subscriber can tell apart, structured output and tool calls streamed."""

import dataclasses
import re
import time

import pytest

from swarm.providers.anthropic_backend import AnthropicBackend
from swarm.providers.base import (
    STOP_TOOL_CALLS,
    ProviderTransientError,
    StreamDelta,
    ToolCall,
    ToolSpec,
)
from swarm.providers.capabilities import Capabilities, CapabilityStore
from swarm.providers.offline import STREAM_PIECES, OfflineProvider
from swarm.providers.openai_backend import OpenAIBackend
from swarm.providers.retry import RetryingProvider
from swarm.providers.streaming import text_pieces
from swarm.redact import redact
from tests.fakes.llm_server import cut, ok, status, tool_calls
from tests.swarm.providers.conftest import PLAN_SCHEMA, make_request

ANSWER = "Streaming works: every piece arrives in order, and the pieces join up."
PROTOCOLS = ["anthropic", "openai"]


class Deltas(list):
    """An on_delta callback that keeps what it is given."""

    def __call__(self, delta: StreamDelta) -> None:
        self.append(delta)

    @property
    def text(self) -> str:
        return "".join(d.text for d in self)


@pytest.fixture
async def backends(fake_llm):
    store = CapabilityStore()
    made = {
        "anthropic": AnthropicBackend(
            env={"ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef"},
            base_url=fake_llm.anthropic_base_url,
            capabilities=store,
        ),
        "openai": OpenAIBackend(
            env={"OPENAI_API_KEY": "k"}, base_url=fake_llm.openai_base_url, capabilities=store
        ),
    }
    made["store"] = store
    yield made
    for name in PROTOCOLS:
        await made[name].aclose()


def streamed(model="test-model", **kw):
    deltas = Deltas()
    return dataclasses.replace(make_request(model, **kw), on_delta=deltas), deltas


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_text_deltas_arrive_in_order_and_join_to_the_answer(fake_llm, backends, protocol):
    fake_llm.script(ok(ANSWER, input_tokens=40, output_tokens=15))
    request, deltas = streamed()
    result = await backends[protocol].complete(request)
    assert fake_llm.requests[0].body["stream"] is True
    assert len(deltas) >= 5  # word by word, not one piece
    assert deltas.text == ANSWER == result.text
    assert all(d.attempt == 1 and not d.restart for d in deltas)
    assert (result.usage.input_tokens, result.usage.output_tokens) == (40, 15)


async def test_openai_stream_asks_for_usage(fake_llm, backends):
    request, _ = streamed()
    await backends["openai"].complete(request)
    assert fake_llm.requests[0].body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_without_a_callback_nothing_asks_for_a_stream(fake_llm, backends, protocol):
    await backends[protocol].complete(make_request())
    assert "stream" not in fake_llm.requests[0].body


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("how", ["drop", "eof", "error"])
async def test_a_cut_stream_is_retryable_never_a_half_answer(fake_llm, backends, protocol, how):
    fake_llm.script(cut(ANSWER, after=3, how=how))
    request, deltas = streamed()
    with pytest.raises(ProviderTransientError) as caught:
        await backends[protocol].complete(request)
    assert caught.value.retryable
    assert len(deltas) == 3  # what arrived before the cut did reach the subscriber


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_body_cut_without_streaming_is_retryable(fake_llm, backends, protocol):
    fake_llm.script(cut(ANSWER))
    with pytest.raises(ProviderTransientError):
        await backends[protocol].complete(make_request())


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_retried_stream_tells_the_subscriber_to_drop_the_partial_text(
    fake_llm, backends, protocol, sleep
):
    fake_llm.script(cut("A first try that breaks off", after=2), ok(ANSWER))
    provider = RetryingProvider(backends[protocol], base_delay=0.01, sleep=sleep)
    request, deltas = streamed()
    result = await provider.complete(request)
    assert result.attempts == 2
    assert result.text == ANSWER
    first = [d for d in deltas if d.attempt == 1]
    assert [d.text for d in first] == ["A", " first"]
    restart = deltas[len(first)]
    assert restart == StreamDelta("", attempt=2, restart=True)
    second = deltas[len(first) + 1 :]
    assert all(d.attempt == 2 and not d.restart for d in second)
    assert "".join(d.text for d in second) == ANSWER


async def test_a_retry_before_any_piece_sends_no_restart(fake_llm, backends, sleep):
    fake_llm.script(status(529), ok(ANSWER))
    provider = RetryingProvider(backends["anthropic"], base_delay=0.01, sleep=sleep)
    request, deltas = streamed()
    await provider.complete(request)
    assert not any(d.restart for d in deltas)
    assert {d.attempt for d in deltas} == {2}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_structured_output_streamed_still_parses(fake_llm, backends, protocol):
    answer = {"goals": ["stream the plan", "parse it"], "confidence": 0.82}
    fake_llm.script(ok(answer))
    request, deltas = streamed(schema=PLAN_SCHEMA)
    result = await backends[protocol].complete(request)
    assert result.parsed == answer
    assert len(deltas) >= 2
    assert deltas.text == result.text  # the JSON as it was written, piece by piece


@pytest.mark.parametrize(("protocol", "prefix"), [("anthropic", "toolu"), ("openai", "call")])
async def test_tool_calls_streamed_are_assembled(fake_llm, backends, protocol, prefix):
    spec = ToolSpec("read_file", "Read a file.", {"type": "object"})
    fake_llm.script(
        tool_calls(
            ("read_file", {"path": "app/main.py"}),
            ("read_file", {"path": "README.md"}),
            text="Reading two files.",
        )
    )
    request, deltas = streamed()
    result = await backends[protocol].complete(dataclasses.replace(request, tools=(spec,)))
    assert result.stop_reason == STOP_TOOL_CALLS
    assert result.tool_calls == (
        ToolCall(f"{prefix}_fake_1", "read_file", {"path": "app/main.py"}),
        ToolCall(f"{prefix}_fake_2", "read_file", {"path": "README.md"}),
    )
    assert deltas.text == "Reading two files." == result.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_server_that_cannot_stream_calls_back_once_with_the_answer(
    fake_llm, backends, protocol
):
    backends["store"].set(
        protocol, "test-model", backends[protocol].base_url, Capabilities("prompt", False, False)
    )
    fake_llm.script(ok(ANSWER))
    request, deltas = streamed()
    result = await backends[protocol].complete(request)
    assert "stream" not in fake_llm.requests[0].body
    assert deltas == [StreamDelta(ANSWER)]
    assert result.text == ANSWER


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_failing_callback_surfaces_unchanged_and_is_not_retried(
    fake_llm, backends, protocol, sleep
):
    class SubscriberGone(RuntimeError):
        pass

    def on_delta(delta):
        raise SubscriberGone("the page went away")

    provider = RetryingProvider(backends[protocol], sleep=sleep)
    request = dataclasses.replace(make_request(), on_delta=on_delta)
    with pytest.raises(SubscriberGone):
        await provider.complete(request)
    assert len(fake_llm.requests) == 1


async def test_offline_streams_its_answer_in_a_few_pieces():
    request, deltas = streamed("offline/model", prompt="say something long enough to split")
    result = await OfflineProvider(latency_ms=0).complete(request)
    assert 2 <= len(deltas) <= STREAM_PIECES
    assert deltas.text == result.text


@pytest.mark.parametrize(
    "text", ["", "x", "one", "two words", "  lead and trail  ", "a\n\nb c d e f"]
)
def test_text_pieces_join_back(text):
    pieces = text_pieces(text)
    assert "".join(pieces) == text
    assert len(pieces) <= 4
    assert all(pieces)


async def test_offline_stamps_each_streamed_piece_for_the_benchmark(monkeypatch):
    monkeypatch.setenv("TEKTON_OFFLINE_STREAM_STAMPS", "1")
    request, deltas = streamed("offline/model", prompt="say something long enough to split")
    before = time.time()
    result = await OfflineProvider(latency_ms=0).complete(request)
    stamps = [re.match(r"\u00abt=(\d+\.\d+)\u00bb", d.text) for d in deltas]
    assert all(stamps) and len(stamps) >= 2
    assert all(before <= float(m.group(1)) <= time.time() for m in stamps)
    assert "\u00abt=" not in result.text  # the stored answer never carries them
    joined = "".join(d.text for d in deltas)
    assert redact(joined) == joined  # nothing in a stamp looks like a secret to redaction
