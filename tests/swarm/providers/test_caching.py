"""Prompt-cache hints on the wire in both protocols, cached usage read back, and priced."""

import dataclasses
import json

import pytest

from swarm.providers import router_build
from swarm.providers.anthropic_backend import AnthropicBackend
from swarm.providers.base import (
    CompletionRequest,
    Message,
    ProviderResponseError,
    ToolSpec,
    Usage,
)
from swarm.providers.capabilities import CapabilityStore
from swarm.providers.openai_backend import OpenAIBackend
from swarm.providers.pricing import usage_cost_usd
from tests.fakes.llm_server import ok
from tests.swarm.providers.conftest import make_request

EPHEMERAL = {"type": "ephemeral"}
CONVERSATION = (
    Message("system", "You are the skeptic. Long, stable instructions."),
    Message("user", "The repository facts and the goal: stable for every round."),
    Message("assistant", "Round 1 answer."),
    Message("user", "Round 2: answer the others."),
)


def conversation(**kw):
    return dataclasses.replace(make_request("test-model"), messages=CONVERSATION, **kw)


@pytest.fixture
def store():
    return CapabilityStore()


@pytest.fixture
async def anthropic_backend(fake_llm, store):
    backend = AnthropicBackend(
        env={"ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef"},
        base_url=fake_llm.anthropic_base_url,
        capabilities=store,
    )
    yield backend
    await backend.aclose()


@pytest.fixture
async def openai_backend(fake_llm, store):
    backend = OpenAIBackend(
        env={"OPENAI_API_KEY": "k"}, base_url=fake_llm.openai_base_url, capabilities=store
    )
    yield backend
    await backend.aclose()


def openai_takes_cache_key(store, backend, model="test-model"):
    """The fake server stands in for OpenAI itself, which takes prompt_cache_key."""
    caps = store.get("openai", model, backend.base_url)
    store.set("openai", model, backend.base_url, dataclasses.replace(caps, cache="key"))


# --- Anthropic -------------------------------------------------------------------------


async def test_anthropic_breakpoint_ends_the_stable_prefix(fake_llm, anthropic_backend):
    await anthropic_backend.complete(conversation(cache_prefix=2))
    body = fake_llm.requests[0].body
    # The message after it ends the same prefix: the system prompt needs no breakpoint.
    assert body["system"] == CONVERSATION[0].content
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": CONVERSATION[1].content, "cache_control": EPHEMERAL}
            ],
        },
        {"role": "assistant", "content": "Round 1 answer."},
        {"role": "user", "content": "Round 2: answer the others."},
    ]


async def test_anthropic_breakpoints_after_the_tools_the_shared_part_and_the_prefix(
    fake_llm, anthropic_backend
):
    fake_llm.script(ok({"answer": 1}))
    tool = ToolSpec("read_file", "Read a file.", {"type": "object", "properties": {}})
    await anthropic_backend.complete(
        conversation(
            cache_prefix=4,
            cache_shared=2,
            tools=(tool,),
            json_schema={"type": "object", "properties": {"answer": {"type": "integer"}}},
        )
    )
    body = fake_llm.requests[0].body
    # The last tool definition (the answer tool) ends the part every call repeats.
    assert [("cache_control" in t) for t in body["tools"]] == [False, True]
    marked = [i for i, m in enumerate(body["messages"]) if "cache_control" in str(m)]
    assert marked == [0, 2]  # the shared part's end, the prefix's end
    assert str(body).count("cache_control") <= 4


async def test_anthropic_prefix_of_only_the_system_prompt(fake_llm, anthropic_backend):
    await anthropic_backend.complete(conversation(cache_prefix=1))
    body = fake_llm.requests[0].body
    assert body["system"][0]["cache_control"] == EPHEMERAL
    assert all(isinstance(m["content"], str) for m in body["messages"])


async def test_anthropic_without_hints_sends_no_breakpoint(fake_llm, anthropic_backend):
    await anthropic_backend.complete(conversation())
    body = fake_llm.requests[0].body
    assert body["system"] == CONVERSATION[0].content
    assert "cache_control" not in str(body)


@pytest.mark.parametrize("streamed", [False, True])
async def test_anthropic_cache_reads_and_writes_come_back_inside_input_tokens(
    fake_llm, anthropic_backend, streamed
):
    fake_llm.script(ok("hi", input_tokens=1000, cached_tokens=800, cache_write_tokens=150))
    request = conversation(cache_prefix=2)
    if streamed:
        request = dataclasses.replace(request, on_delta=lambda d: None)
    result = await anthropic_backend.complete(request)
    # On the wire Anthropic said input_tokens=50 plus 800 read and 150 written.
    usage = result.usage
    assert usage == Usage(
        input_tokens=1000, output_tokens=7, cached_input_tokens=800, cache_write_tokens=150
    )
    assert usage.uncached_input_tokens == 50


# --- OpenAI ----------------------------------------------------------------------------


async def test_openai_sends_the_cache_key_given(fake_llm, store, openai_backend):
    openai_takes_cache_key(store, openai_backend)
    await openai_backend.complete(conversation(cache_prefix=2, cache_key="run-7-plan-skeptic"))
    assert fake_llm.requests[0].body["prompt_cache_key"] == "run-7-plan-skeptic"


async def test_openai_derives_one_key_per_stable_prefix(fake_llm, store, openai_backend):
    openai_takes_cache_key(store, openai_backend)
    await openai_backend.complete(conversation(cache_prefix=2))
    later_round = dataclasses.replace(
        conversation(cache_prefix=2),
        messages=(*CONVERSATION, Message("assistant", "r2"), Message("user", "Round 3.")),
    )
    await openai_backend.complete(later_round)
    other_prefix = dataclasses.replace(
        conversation(cache_prefix=2),
        messages=(CONVERSATION[0], Message("user", "another goal"), *CONVERSATION[2:]),
    )
    await openai_backend.complete(other_prefix)
    keys = [r.body["prompt_cache_key"] for r in fake_llm.requests]
    assert keys[0] == keys[1]
    assert keys[0] != keys[2]
    assert keys[0].startswith("tekton-")


async def test_openai_without_a_prefix_or_key_sends_none(fake_llm, store, openai_backend):
    openai_takes_cache_key(store, openai_backend)
    await openai_backend.complete(conversation())
    assert "prompt_cache_key" not in fake_llm.requests[0].body


async def test_compatible_servers_get_no_cache_key_by_default(fake_llm, openai_backend):
    assert openai_backend.capabilities("test-model").cache == "none"
    await openai_backend.complete(conversation(cache_prefix=2, cache_key="k1"))
    assert "prompt_cache_key" not in fake_llm.requests[0].body


async def test_an_sdk_without_the_parameter_sends_the_key_in_the_body(
    fake_llm, store, openai_backend
):
    openai_takes_cache_key(store, openai_backend)
    openai_backend._takes_cache_key = False  # as an SDK older than prompt_cache_key
    await openai_backend.complete(conversation(cache_key="k2"))
    assert fake_llm.requests[0].body["prompt_cache_key"] == "k2"


@pytest.mark.parametrize("streamed", [False, True])
async def test_openai_cached_tokens_come_back(fake_llm, openai_backend, streamed):
    fake_llm.script(ok("hi", input_tokens=1000, output_tokens=20, cached_tokens=768))
    request = conversation()
    if streamed:
        request = dataclasses.replace(request, on_delta=lambda d: None)
    result = await openai_backend.complete(request)
    assert result.usage == Usage(input_tokens=1000, output_tokens=20, cached_input_tokens=768)


# --- priced through the router -----------------------------------------------------------


async def test_router_prices_cached_reads_and_writes_apart(fake_llm):
    env = {
        "PATH": "",
        "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
        "ANTHROPIC_BASE_URL": fake_llm.anthropic_base_url,
        "OPENAI_API_KEY": "k",
        "OPENAI_BASE_URL": fake_llm.openai_base_url,
    }
    router = router_build(env=env, capability_store=CapabilityStore())
    fake_llm.script(
        ok("a", input_tokens=1000, output_tokens=100, cached_tokens=800, cache_write_tokens=150),
        ok("b", input_tokens=1000, output_tokens=500, cached_tokens=800),
    )
    claude = await router.complete(make_request("anthropic/claude-opus-4.1"))
    gpt = await router.complete(make_request("openai/gpt-4o"))
    await router.aclose()
    # Opus 4.1: $15/M input, reads at 0.1x, writes at 1.25x, $75/M output.
    assert claude.cost_usd == pytest.approx(
        (50 * 15 + 800 * 1.5 + 150 * 18.75 + 100 * 75) / 1_000_000
    )
    # gpt-4o: $2.50/M input, $1.25/M cached, $10/M output.
    assert gpt.cost_usd == pytest.approx((200 * 2.5 + 800 * 1.25 + 500 * 10) / 1_000_000)
    assert claude.cost_usd == pytest.approx(
        usage_cost_usd("anthropic/claude-opus-4.1", claude.usage)
    )


ANSWERS = (
    ("debater_answer", {"type": "object", "properties": {"position": {"type": "string"}}}),
    ("mediator_answer", {"type": "object", "properties": {"artifact": {"type": "object"}}}),
)


def _answering(schema_name: str, **kw) -> CompletionRequest:
    schema = dict(ANSWERS)[schema_name]
    tool = ToolSpec("read_file", "Read a file.", {"type": "object", "properties": {}})
    return CompletionRequest(
        model=kw.pop("model", "claude-sonnet-4-5"),
        messages=(Message("system", "sys"), Message("user", "shared"), Message("user", "turn")),
        json_schema=schema,
        schema_name=schema_name,
        answer_schemas=ANSWERS,
        tools=kw.pop("tools", (tool,)),
        cache_prefix=2,
        **kw,
    )


async def test_anthropic_sends_every_answer_schema_of_the_stage_as_one_tools_list(
    fake_llm, anthropic_backend
):
    fake_llm.script(
        ok({"artifact": {}}, tool="mediator_answer"), ok({"position": "x"}, tool="debater_answer")
    )
    mediator = await anthropic_backend.complete(_answering("mediator_answer"))
    await anthropic_backend.complete(_answering("debater_answer"))
    sent = [r.body for r in fake_llm.requests]
    # The same tools, in the same order, with the same tool_choice: one cacheable prefix.
    assert sent[0]["tools"] == sent[1]["tools"]
    assert [t["name"] for t in sent[0]["tools"]] == [
        "read_file",
        "debater_answer",
        "mediator_answer",
    ]
    assert sent[0]["tool_choice"] == sent[1]["tool_choice"] == {"type": "any"}
    assert mediator.parsed == {"artifact": {}}


async def test_anthropic_an_answer_with_another_calls_answer_tool_is_refused(
    fake_llm, anthropic_backend
):
    fake_llm.script(ok({"position": "x"}, tool="debater_answer"))
    with pytest.raises(ProviderResponseError, match="debater_answer tool, asked for mediator"):
        await anthropic_backend.complete(_answering("mediator_answer"))


async def test_openai_sends_the_answer_schemas_as_functions_beside_the_tools(
    fake_llm, openai_backend
):
    fake_llm.script(ok({"artifact": {}}, tool="mediator_answer"), ok({"position": "x"}))
    mediator = await openai_backend.complete(_answering("mediator_answer", model="gpt-5"))
    debater = await openai_backend.complete(
        dataclasses.replace(_answering("debater_answer", model="gpt-5"), on_delta=lambda d: None)
    )
    sent = [r.body for r in fake_llm.requests]
    # No response_format (a prefix of the system message that differs per schema): the
    # tools, the same for both, head the prefix OpenAI caches.
    assert all("response_format" not in b for b in sent)
    assert sent[0]["tools"] == sent[1]["tools"]
    assert [t["function"]["name"] for t in sent[0]["tools"]] == [
        "read_file",
        "debater_answer",
        "mediator_answer",
    ]
    assert sent[0]["tool_choice"] == sent[1]["tool_choice"] == "required"
    assert mediator.parsed == {"artifact": {}} and not mediator.tool_calls
    assert debater.parsed == {"position": "x"} and json.loads(debater.text) == {"position": "x"}


async def test_openai_without_tools_keeps_the_answer_schema_in_response_format(
    fake_llm, openai_backend
):
    fake_llm.script(ok({"position": "x"}))
    done = await openai_backend.complete(_answering("debater_answer", model="gpt-5", tools=()))
    body = fake_llm.requests[0].body
    assert body["response_format"]["json_schema"]["name"] == "debater_answer"
    assert "tools" not in body
    assert done.parsed == {"position": "x"}


async def test_openai_an_answer_with_another_calls_function_is_refused(fake_llm, openai_backend):
    fake_llm.script(ok({"position": "x"}, tool="debater_answer"))
    with pytest.raises(ProviderResponseError, match="debater_answer function, asked for mediator"):
        await openai_backend.complete(_answering("mediator_answer", model="gpt-5"))


async def test_openai_a_turn_out_of_tool_calls_is_forced_to_the_answer_function(
    fake_llm, openai_backend
):
    fake_llm.script(ok({"position": "x"}))
    done = await openai_backend.complete(
        _answering("debater_answer", model="gpt-5", tool_choice="none")
    )
    forced = {"type": "function", "function": {"name": "debater_answer"}}
    assert fake_llm.requests[0].body["tool_choice"] == forced
    assert done.parsed == {"position": "x"}
