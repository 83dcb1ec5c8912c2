"""Cassettes: recording any backend, replaying it, and redacting what is written."""

import asyncio
import dataclasses
import hashlib
import json

import pytest

from swarm.providers import router_build
from swarm.providers.base import (
    STOP_END,
    STOP_TOOL_CALLS,
    Message,
    ProviderError,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)
from swarm.providers.capabilities import Capabilities, CapabilityStore
from swarm.providers.replay import RecordingProvider, ReplayProvider, request_key
from tests.fakes.llm_server import ok, tool_calls
from tests.swarm.providers.conftest import PLAN_SCHEMA, ScriptedProvider, completion, make_request


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_key_depends_on_model_messages_and_schema_only():
    base = make_request("a/model", prompt="x", schema=PLAN_SCHEMA)
    assert request_key(base) == request_key(
        dataclasses.replace(base, temperature=0.9, metadata={"round": 5})
    )
    assert request_key(base) != request_key(dataclasses.replace(base, model="b/model"))
    assert request_key(base) != request_key(make_request("a/model", prompt="y", schema=PLAN_SCHEMA))
    assert request_key(base) != request_key(make_request("a/model", prompt="x", schema=None))


async def test_record_then_replay_round_trip(tmp_path):
    cassette = tmp_path / "calls" / "run.jsonl"
    answers = [
        completion(
            '{"goals": ["g"], "confidence": 0.8}', parsed={"goals": ["g"], "confidence": 0.8}
        ),
        completion("second"),
    ]
    recorder = RecordingProvider(ScriptedProvider(*answers), cassette)
    first = make_request("anthropic/claude-opus-4.1", prompt="plan it", schema=PLAN_SCHEMA)
    second = make_request("openai/gpt-4o", prompt="review it")
    recorded = [await recorder.complete(first), await recorder.complete(second)]

    replay = ReplayProvider(cassette)
    assert len(replay) == 2
    again_second = await replay.complete(second)
    again_first = await replay.complete(first)
    assert again_first.parsed == recorded[0].parsed
    assert again_first.text == recorded[0].text
    assert again_second.text == "second"
    assert again_first.provider == "replay"
    assert again_first.usage == recorded[0].usage
    assert again_first.cost_usd == 0.0


async def test_repeated_request_replays_its_answers_in_order(tmp_path):
    cassette = tmp_path / "c.jsonl"
    recorder = RecordingProvider(ScriptedProvider("one", "two"), cassette)
    request = make_request()
    await recorder.complete(request)
    await recorder.complete(request)
    replay = ReplayProvider(cassette)
    texts = [(await replay.complete(request)).text for _ in range(3)]
    assert texts == ["one", "two", "two"]


async def test_unknown_request_names_key_and_cassette(tmp_path):
    cassette = tmp_path / "c.jsonl"
    await RecordingProvider(ScriptedProvider("known"), cassette).complete(
        make_request(prompt="known")
    )
    unknown = make_request(prompt="never recorded")
    with pytest.raises(ProviderError) as caught:
        await ReplayProvider(cassette).complete(unknown)
    assert request_key(unknown) in str(caught.value)
    assert str(cassette) in str(caught.value)


def test_missing_cassette_is_a_clear_error(tmp_path):
    with pytest.raises(ProviderError, match="not found"):
        ReplayProvider(tmp_path / "nope.jsonl")


def test_corrupt_cassette_line_is_reported_with_its_number(tmp_path):
    cassette = tmp_path / "c.jsonl"
    cassette.write_text('{"key": "k", "completion": {"text": "x"}}\nnot json\n')
    with pytest.raises(ProviderError, match="line 2"):
        ReplayProvider(cassette)


async def test_recorded_cassette_is_redacted_but_still_replays(tmp_path):
    secret = "sk-or-v1-abcdefghijklmnopqrstuvwxyz0123456789"
    cassette = tmp_path / "c.jsonl"
    request = dataclasses.replace(
        make_request(), messages=(Message("user", f"use key {secret} and mail ops@example.com"),)
    )
    recorder = RecordingProvider(ScriptedProvider(completion(f"I saw {secret}")), cassette)
    await recorder.complete(request)
    raw = cassette.read_text()
    assert secret not in raw
    assert "ops@example.com" not in raw
    [line] = read_lines(cassette)
    assert "[API_KEY#1]" in line["messages"][0]["content"]
    assert "[API_KEY#1]" in line["completion"]["text"]
    # The key is computed from the real request, so the same request still replays.
    assert (await ReplayProvider(cassette).complete(request)).text == "I saw [API_KEY#1]"


async def test_concurrent_recording_writes_whole_lines(tmp_path):
    cassette = tmp_path / "c.jsonl"

    class Echo:
        name = "echo"

        async def complete(self, request):
            await asyncio.sleep(0)
            return completion("x" * 5000 + request.messages[-1].content)

    recorder = RecordingProvider(Echo(), cassette)
    await asyncio.gather(*(recorder.complete(make_request(prompt=f"p{i}")) for i in range(40)))
    lines = read_lines(cassette)
    assert len(lines) == 40
    assert {line["messages"][-1]["content"] for line in lines} == {f"p{i}" for i in range(40)}


async def test_failed_calls_are_not_recorded(tmp_path):
    cassette = tmp_path / "c.jsonl"
    recorder = RecordingProvider(ScriptedProvider(ProviderError("boom")), cassette)
    with pytest.raises(ProviderError):
        await recorder.complete(make_request())
    assert not cassette.exists()


# --- version 2: tools, streaming, cache usage --------------------------------------------

READ_FILE = ToolSpec("read_file", "Read a file.", {"type": "object"})


def v1_key(request):
    """How version 1 cassettes computed their keys."""
    material = {
        "model": request.model,
        "messages": [[m.role, m.content] for m in request.messages],
        "json_schema": request.json_schema,
    }
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def test_plain_requests_keep_their_version_1_key():
    request = make_request("a/model", prompt="x", schema=PLAN_SCHEMA)
    assert request_key(request) == v1_key(request)


def test_key_depends_on_tools_and_tool_choice():
    base = make_request("a/model")
    with_tool = dataclasses.replace(base, tools=(READ_FILE,))
    other_tool = dataclasses.replace(
        base,
        tools=(ToolSpec("read_file", "Read a file.", {"type": "object", "required": ["path"]}),),
    )
    forced = dataclasses.replace(with_tool, tool_choice="required")
    keys = {request_key(r) for r in (base, with_tool, other_tool, forced)}
    assert len(keys) == 4
    # Cache hints and the stream callback do not change what the answer is.
    assert request_key(with_tool) == request_key(
        dataclasses.replace(with_tool, cache_prefix=1, cache_key="k", on_delta=print)
    )


def test_key_depends_on_tool_blocks():
    call = ToolCall("c1", "read_file", {"path": "a.py"})
    first = dataclasses.replace(
        make_request(),
        messages=(Message("assistant", (call,)), Message("user", (ToolResult("c1", "one"),))),
    )
    second = dataclasses.replace(
        first, messages=(first.messages[0], Message("user", (ToolResult("c1", "two"),)))
    )
    assert request_key(first) != request_key(second)


async def test_a_version_1_cassette_still_replays(tmp_path):
    request = make_request("openai/gpt-4o", prompt="old")
    cassette = tmp_path / "v1.jsonl"
    line = {
        "v": 1,
        "key": v1_key(request),
        "model": request.model,
        "schema_name": "plan",
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "json_schema": None,
        "metadata": {},
        "completion": {
            "text": "from 2025",
            "parsed": None,
            "usage": {"input_tokens": 9, "output_tokens": 3},
            "provider": "openai",
            "model": "openai/gpt-4o",
            "cost_usd": 0.0,
            "latency_s": 0.1,
            "attempts": 1,
        },
    }
    cassette.write_text(json.dumps(line) + "\n")
    replay = ReplayProvider(cassette)
    result = await replay.complete(request)
    assert result.text == "from 2025"
    assert result.usage == Usage(9, 3)
    assert (result.tool_calls, result.stop_reason) == ((), STOP_END)
    assert replay.capabilities("openai/gpt-4o") is None


async def test_cassette_carries_tool_calls_stop_reason_and_cache_usage(tmp_path):
    cassette = tmp_path / "c.jsonl"
    answer = dataclasses.replace(
        completion("Reading."),
        usage=Usage(1000, 20, cached_input_tokens=800, cache_write_tokens=100),
        tool_calls=(ToolCall("c1", "read_file", {"path": "a.py"}),),
        stop_reason=STOP_TOOL_CALLS,
    )
    caps = Capabilities("tool", True, True, "breakpoints")
    recorder = RecordingProvider(ScriptedProvider(answer), cassette, capabilities=caps)
    request = dataclasses.replace(
        make_request("anthropic/claude-x"),
        tools=(READ_FILE,),
        cache_prefix=1,
        on_delta=lambda d: None,
    )
    await recorder.complete(request)
    [line] = read_lines(cassette)
    assert line["v"] == 2
    assert line["tools"] == [dataclasses.asdict(READ_FILE)]
    assert line["streamed"] is True
    assert line["cache_prefix"] == 1
    assert line["capabilities"] == caps.as_dict()
    assert line["completion"]["tool_calls"] == [
        {"id": "c1", "name": "read_file", "arguments": {"path": "a.py"}}
    ]
    assert line["completion"]["stop_reason"] == "tool_calls"

    replay = ReplayProvider(cassette)
    again = await replay.complete(request)
    assert again.tool_calls == answer.tool_calls
    assert again.stop_reason == STOP_TOOL_CALLS
    assert again.usage == answer.usage
    assert replay.capabilities("anthropic/claude-x") == caps


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
async def test_record_then_replay_a_streamed_tool_calling_conversation(fake_llm, tmp_path, vendor):
    cassette = tmp_path / "conversation.jsonl"
    env = {
        "PATH": "",
        "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
        "ANTHROPIC_BASE_URL": fake_llm.anthropic_base_url,
        "OPENAI_API_KEY": "k",
        "OPENAI_BASE_URL": fake_llm.openai_base_url,
    }
    model = "anthropic/claude-opus-4.1" if vendor == "anthropic" else "openai/gpt-4o"
    fake_llm.script(
        tool_calls(("read_file", {"path": "app/main.py"}), text="Let me read it."),
        ok("It returns ok.", input_tokens=500, cached_tokens=400),
    )

    async def converse(router):
        deltas = []
        request = dataclasses.replace(
            make_request(model, prompt="what does app/main.py do?"),
            tools=(READ_FILE,),
            cache_prefix=1,
            on_delta=deltas.append,
        )
        first = await router.complete(request)
        follow = dataclasses.replace(
            request,
            messages=(
                *request.messages,
                first.assistant_message(),
                Message(
                    "user",
                    tuple(ToolResult(c.id, "def health(): return 'ok'") for c in first.tool_calls),
                ),
            ),
        )
        second = await router.complete(follow)
        return first, second, "".join(d.text for d in deltas)

    recorder = router_build(env=env, record_path=str(cassette), capability_store=CapabilityStore())
    live = await converse(recorder)
    await recorder.aclose()
    assert len(fake_llm.requests) == 2
    assert all(r.body["stream"] is True for r in fake_llm.requests)

    replayer = router_build(env=env, backend_override="replay", replay_path=str(cassette))
    assert replayer.capabilities(model) == recorder.capabilities(model)
    replayed = await converse(replayer)
    assert len(fake_llm.requests) == 2  # nothing went to the network
    first, second, streamed_text = replayed
    assert first.tool_calls == live[0].tool_calls and first.tool_calls
    assert first.stop_reason == STOP_TOOL_CALLS
    assert second.text == live[1].text == "It returns ok."
    assert second.usage.cached_input_tokens == 400
    assert streamed_text == live[2] == "Let me read it.It returns ok."
