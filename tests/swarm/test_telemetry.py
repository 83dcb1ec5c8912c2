"""The engine's spans follow the GenAI semantic conventions and carry no content unless
capture is on, and then only redacted."""

from __future__ import annotations

import json

import pytest

from swarm import telemetry
from swarm.debate import stage_run
from swarm.providers.base import ProviderTimeout
from tests.swarm.conftest import ScriptedCompleter, by_kind, config, debater_answer, stage_input

SECRET = "sk-ant-api03-" + "Z" * 40


@pytest.fixture
def capture():
    yield telemetry.configure
    telemetry.configure(capture_content=False)


async def run_stage(facts, handler=None, goal="Add a /health endpoint"):
    return await stage_run(
        stage_input(facts, "plan", goal=goal, run_id=7),
        config(rounds=1),
        completer=ScriptedCompleter(handler or by_kind()),
        emit=lambda e: None,
    )


async def test_a_turn_per_agent_and_a_chat_span_per_call(facts, otel_spans):
    await run_stage(facts)
    spans = otel_spans.get_finished_spans()
    turns = [s for s in spans if s.name.startswith("invoke_agent ")]
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert len(turns) == 3 * 2 + 1  # opening + one debate round, then the mediator
    assert len(chats) == 7
    chat = next(s for s in chats if s.attributes["tekton.role"] == "skeptic")
    a = chat.attributes
    assert chat.name == "chat skeptic" and a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "skeptic" and a["tekton.model.vendor"] == "test"
    assert a["gen_ai.provider.name"] == "scripted"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (100, 10)
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["tekton.run_id"] == 7 and a["tekton.stage"] == "plan"
    parents = {s.context.span_id: s for s in turns}
    assert parents[chat.parent.span_id].attributes["gen_ai.agent.name"] == "skeptic"
    assert all(s.attributes["gen_ai.operation.name"] == "invoke_agent" for s in turns)


async def test_no_content_in_attributes_unless_captured_and_then_redacted(
    facts, otel_spans, capture
):
    goal = f"Rotate the key {SECRET}"
    await run_stage(facts, goal=goal)
    dumped = json.dumps([dict(s.attributes) for s in otel_spans.get_finished_spans()], default=str)
    assert "gen_ai.input.messages" not in dumped and "Rotate the key" not in dumped
    otel_spans.clear()

    capture(capture_content=True)
    await run_stage(facts, goal=goal)
    spans = otel_spans.get_finished_spans()
    chat = next(s for s in spans if s.name.startswith("chat "))
    assert "Rotate the key" in chat.attributes["gen_ai.input.messages"]
    assert "gen_ai.output.messages" in chat.attributes
    assert SECRET not in json.dumps([dict(s.attributes) for s in spans], default=str)


async def test_a_failed_call_marks_its_span(facts, otel_spans):
    def handler(request):
        if request.metadata["role"] == "pragmatist":
            return ProviderTimeout("no answer within 120 s")
        return debater_answer()

    with pytest.raises(ProviderTimeout):
        await run_stage(facts, handler)
    failed = [
        s for s in otel_spans.get_finished_spans()
        if s.name.startswith("chat ") and s.attributes.get("error.type") == "ProviderTimeout"
    ]  # fmt: skip
    assert failed and failed[0].status.status_code.name == "ERROR"
    assert failed[0].attributes["gen_ai.provider.name"] == "scripted"


def test_tool_spans_name_the_tool_and_hide_arguments_unless_captured(otel_spans, capture):
    with telemetry.tool_span("read_file", "call_1", {"path": "README.md"}):
        pass
    with pytest.raises(RuntimeError), telemetry.tool_span("run_tests", "call_2"):
        raise RuntimeError("sandbox refused")
    capture(capture_content=True)
    with telemetry.tool_span("read_file", "call_3", {"path": "x", "token": SECRET}):
        pass
    first, second, third = otel_spans.get_finished_spans()
    assert first.name == "execute_tool read_file"
    assert first.attributes["gen_ai.tool.call.id"] == "call_1"
    assert "gen_ai.tool.call.arguments" not in first.attributes
    assert second.status.status_code.name == "ERROR"
    assert second.attributes["error.type"] == "RuntimeError"
    assert SECRET not in third.attributes["gen_ai.tool.call.arguments"]


async def test_without_an_sdk_the_spans_cost_nothing_and_change_nothing(facts):
    out = await run_stage(facts)
    assert out.status == "succeeded"
