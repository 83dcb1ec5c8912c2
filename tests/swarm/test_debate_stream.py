"""The engine streams each agent's words as AgentDeltas while its call runs: through both
official SDKs at the fake server, and from the offline backend; a cut stream ends in a
discard (then a retry, or the stage's error), never in a stored half message."""

from __future__ import annotations

import pytest

from swarm.debate import stage_run
from swarm.events import AgentDelta, AgentMessage, LlmCallDone
from swarm.providers.anthropic_backend import AnthropicBackend
from swarm.providers.base import ProviderTransientError, StreamDelta
from swarm.providers.capabilities import CapabilityStore
from swarm.providers.offline import OfflineProvider
from swarm.providers.openai_backend import OpenAIBackend
from swarm.providers.retry import RetryingProvider
from swarm.stages import DEBATER_ROLES
from tests.fakes.diamond import DiamondResponder
from tests.fakes.llm_server import FakeLlmServer, cut
from tests.swarm.conftest import ScriptedCompleter, config, stage_input, valid_artifacts

PROTOCOLS = ["anthropic", "openai"]


@pytest.fixture
def fake_llm():
    server = FakeLlmServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def sdk(fake_llm):
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
    yield made
    for name in PROTOCOLS:
        await made[name].aclose()


def calls_of(events) -> dict[str, list[AgentDelta]]:
    calls: dict[str, list[AgentDelta]] = {}
    for e in events:
        if isinstance(e, AgentDelta):
            calls.setdefault(e.call_id, []).append(e)
    return calls


def streamed_text(deltas: list[AgentDelta]) -> str:
    return "".join(d.text for d in deltas)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_each_agents_words_stream_before_its_message_through_the_sdk(
    facts, fake_llm, sdk, protocol
):
    fake_llm.responder = DiamondResponder("")
    events: list = []
    outcome = await stage_run(
        stage_input(facts, "plan"), config(rounds=0), completer=sdk[protocol], emit=events.append
    )
    assert outcome.status == "succeeded"
    calls = calls_of(events)
    assert len(calls) == 4  # three debaters and the mediator, one streamed call each
    for call_id, deltas in calls.items():
        pieces = [d for d in deltas if d.text]
        assert len(pieces) >= 2, call_id  # in pieces off the wire, not one lump
        assert deltas[-1].done and not any(d.discard for d in deltas)
        role = deltas[0].role
        assert {(d.stage, d.role, d.round) for d in deltas} == {("plan", role, deltas[0].round)}
        assert '"' in streamed_text(deltas)  # the JSON answer as the model writes it
        # The stored message comes after the call's last piece.
        last = max(i for i, e in enumerate(events) if e in deltas)
        message = next(
            i
            for i, e in enumerate(events)
            if isinstance(e, AgentMessage) and e.role == role and i > last
        )
        assert message > last
    assert {d[0].role for d in calls.values()} == {*DEBATER_ROLES, "mediator"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_cut_stream_is_discarded_and_the_retry_streams_afresh(
    facts, fake_llm, sdk, protocol
):
    fake_llm.script(cut("The draft begins and then the line", after=3))
    fake_llm.responder = DiamondResponder("")
    completer = RetryingProvider(sdk[protocol], base_delay=0, max_delay=0)
    events: list = []
    outcome = await stage_run(
        stage_input(facts, "plan"),
        config(consensus_free=True),
        completer=completer,
        emit=events.append,
    )
    assert outcome.status == "succeeded"
    (deltas,) = calls_of(events).values()
    discard = next(i for i, d in enumerate(deltas) if d.discard)
    assert streamed_text(deltas[:discard]).startswith("The draft begins")
    after = deltas[discard + 1 :]
    assert after[-1].done
    stored = [e for e in events if isinstance(e, AgentMessage)]
    assert len(stored) == 1 and "The draft" not in str(stored[0].answer)
    assert streamed_text(after).startswith("{")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_stream_cut_for_good_ends_in_a_discard_and_the_error(
    facts, fake_llm, sdk, protocol
):
    fake_llm.script(cut("Half of an answer that never", after=2))
    events: list = []
    with pytest.raises(ProviderTransientError):
        await stage_run(
            stage_input(facts, "plan"),
            config(consensus_free=True),
            completer=sdk[protocol],
            emit=events.append,
        )
    (deltas,) = calls_of(events).values()
    assert deltas[-1].discard
    assert not any(isinstance(e, AgentMessage) for e in events)
    assert isinstance(events[-1], LlmCallDone) and events[-1].error


async def test_the_offline_backend_streams_every_answer_in_pieces(facts):
    events: list = []
    outcome = await stage_run(
        stage_input(facts, "plan"),
        config(rounds=1),
        completer=OfflineProvider(latency_ms=0),
        emit=events.append,
    )
    assert outcome.status == "succeeded"
    calls = calls_of(events)
    assert len(calls) == 3 + 3 + 1
    for deltas in calls.values():
        assert len([d for d in deltas if d.text]) >= 4
        assert deltas[-1].done


async def test_an_answer_that_fails_validation_is_discarded_before_its_repair(facts):
    answers = iter(["not json at all, just words", valid_artifacts()["plan"]])

    class Streaming(ScriptedCompleter):
        async def complete(self, request):
            completion = await super().complete(request)
            request.on_delta(StreamDelta(completion.text))
            return completion

    events: list = []
    await stage_run(
        stage_input(facts, "plan"),
        config(consensus_free=True),
        completer=Streaming(lambda request: next(answers)),
        emit=events.append,
    )
    first, second = calls_of(events).values()
    assert first[0].text == "not json at all, just words"
    assert first[-1].discard
    assert second[-1].done and not any(d.discard for d in second)


async def test_with_streaming_off_nothing_streams_and_the_outcome_is_the_same(facts):
    outcomes, streamed = [], []
    for stream in (True, False):
        events: list = []
        outcome = await stage_run(
            stage_input(facts, "plan"),
            config(rounds=1, stream=stream),
            completer=OfflineProvider(latency_ms=0),
            emit=events.append,
        )
        outcomes.append(outcome)
        streamed.append(len(calls_of(events)))
    assert streamed == [7, 0]  # 3 + 3 debater calls and the mediator, then none
    assert outcomes[1].status == "succeeded"
    assert outcomes[1].artifact == outcomes[0].artifact
