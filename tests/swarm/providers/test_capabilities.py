"""Capabilities per backend, model and base URL; the store that learns refusals; and the
OpenAI backend sending structured output by whichever mode the store says."""

import dataclasses
import threading

import pytest

from swarm.providers import router_build
from swarm.providers.anthropic_backend import AnthropicBackend
from swarm.providers.base import ProviderBadRequest, ProviderTransientError, ToolSpec
from swarm.providers.capabilities import Capabilities, CapabilityStore, capabilities_default
from swarm.providers.openai_backend import OpenAIBackend
from tests.fakes.llm_server import llama_cpp, ok, status
from tests.swarm.providers.conftest import PLAN_SCHEMA, fake_tool, make_request

ANSWER = {"goals": ["adapt"], "confidence": 0.66}


@pytest.mark.parametrize(
    ("backend", "base_url", "expected"),
    [
        ("anthropic", None, Capabilities("tool", True, True, "breakpoints")),
        ("openai", None, Capabilities("json_schema", True, True, "key")),
        ("openai", "https://api.openai.com/v1/", Capabilities("json_schema", True, True, "key")),
        ("openai", "http://127.0.0.1:8080/v1", Capabilities("json_schema", True, True, "none")),
        ("codex-cli", None, Capabilities("json_schema", False, True, "none")),
        ("claude-cli", None, Capabilities("prompt", False, True, "none")),
        ("offline", None, Capabilities("json_schema", True, True, "none")),
    ],
)
def test_defaults_per_backend(backend, base_url, expected):
    assert capabilities_default(backend, "some-model", base_url) == expected


def test_refusals_walk_down_the_structured_modes():
    store = CapabilityStore()
    url = "http://127.0.0.1:8080/v1"
    assert store.refuse("openai", "smol", url, "json_schema").structured == "json_object"
    assert store.refuse("openai", "smol", url, "json_object").structured == "prompt"
    assert store.get("openai", "smol", url).tools is True
    # Another model on the same server, or the same model elsewhere, is untouched.
    assert store.get("openai", "other", url).structured == "json_schema"
    assert store.get("openai", "smol", "http://127.0.0.1:9090/v1").structured == "json_schema"


def test_anthropic_falls_back_from_the_answer_tool_to_the_prompt():
    store = CapabilityStore()
    assert store.refuse("anthropic", "claude-x", None, "tool").structured == "prompt"


def test_refusing_tools_streaming_and_cache():
    store = CapabilityStore()
    store.refuse("openai", "m", None, "tools")
    store.refuse("openai", "m", None, "streaming")
    caps = store.refuse("openai", "m", None, "cache")
    assert caps == Capabilities("json_schema", tools=False, streaming=False, cache="none")


def test_base_urls_are_compared_without_case_or_trailing_slash():
    store = CapabilityStore()
    store.refuse("openai", "m", "HTTP://Host:8080/v1/", "json_schema")
    assert store.get("openai", "m", "http://host:8080/v1").structured == "json_object"


def test_set_replaces_what_is_known_and_clears_refusals():
    store = CapabilityStore()
    store.refuse("openai", "m", None, "tools")
    store.set("openai", "m", None, Capabilities("json_object", True, False))
    assert store.get("openai", "m", None) == Capabilities("json_object", True, False)


def test_unknown_feature_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown feature 'telepathy'"):
        CapabilityStore().refuse("openai", "m", None, "telepathy")


def test_refusals_from_many_threads_all_land():
    store = CapabilityStore()
    models = [f"m{i}" for i in range(40)]

    def refuse(model):
        for feature in ("json_schema", "tools", "streaming"):
            store.refuse("openai", model, "http://h/v1", feature)

    threads = [threading.Thread(target=refuse, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {store.get("openai", m, "http://h/v1") for m in models} == {
        Capabilities("json_object", False, False, "none")
    }


def test_capabilities_round_trip_as_plain_data():
    caps = Capabilities("json_object", True, False, "key")
    assert Capabilities.from_dict(caps.as_dict()) == caps
    assert Capabilities.from_dict({"structured": "bogus"}).structured == "prompt"


# --- the router ------------------------------------------------------------------------


def test_router_answers_per_model_and_describe_shows_it(tmp_path):
    tool = fake_tool(tmp_path, "claude", "print('')\n")
    env = {
        "PATH": "",
        "ANTHROPIC_API_KEY": "k",
        "OPENAI_API_KEY": "k",
        "TEKTON_CLAUDE_BIN": str(tool),
        "TEKTON_CODEX_BIN": "/nonexistent/codex",
    }
    router = router_build(env=env, capability_store=CapabilityStore())
    assert router.capabilities("anthropic/claude-opus-4.1").structured == "tool"
    assert router.capabilities("openai/gpt-4o").cache == "key"
    assert router.capabilities("claude-cli/sonnet") == Capabilities("prompt", False, True)
    assert router.describe("openai/gpt-4o").endswith(
        "[structured json_schema, tools, streaming, cache key]"
    )
    assert router.describe("claude-cli/sonnet").endswith("[structured prompt, streaming]")


def test_router_refusal_reaches_the_model_behind_a_gateway():
    routes = [
        {
            "match": "local/*",
            "backend": "openai",
            "base_url": "http://127.0.0.1:8080/v1",
            "strip_prefix": True,
        }
    ]
    store = CapabilityStore()
    router = router_build(routes=routes, env={"PATH": ""}, capability_store=store)
    router.capability_refuse("local/smollm2", "json_schema")
    assert store.get("openai", "smollm2", "http://127.0.0.1:8080/v1").structured == "json_object"
    assert router.capabilities("local/smollm2").structured == "json_object"


def test_offline_mode_capabilities():
    router = router_build(env={"PATH": ""}, backend_override="offline")
    assert router.capabilities("anthropic/claude-opus-4.1").tools is True


# --- the OpenAI backend sends what the store says ----------------------------------------


@pytest.fixture
def store():
    return CapabilityStore()


@pytest.fixture
async def llama(fake_llm, store):
    backend = OpenAIBackend(
        env={}, key_env=None, base_url=fake_llm.openai_base_url, capabilities=store
    )
    yield backend
    await backend.aclose()


async def test_llama_cpp_refusing_json_schema_is_learned_and_json_object_answers(
    fake_llm, store, llama
):
    fake_llm.script(llama_cpp(), llama_cpp(then=ok(ANSWER)), llama_cpp(then=ok(ANSWER)))
    request = make_request("smollm2", schema=PLAN_SCHEMA)
    # One call: the refusal (a validation error wrapped in a 500) is learned, not retried.
    result = await llama.complete(request)
    assert result.parsed == ANSWER
    sent = [r.body.get("response_format", {}).get("type") for r in fake_llm.requests]
    assert sent == ["json_schema", "json_object"]
    assert fake_llm.requests[1].body["response_format"]["schema"] == PLAN_SCHEMA
    assert store.get("openai", "smollm2", llama.base_url).structured == "json_object"
    # The next call knows: it goes straight to json_object.
    assert (await llama.complete(request)).parsed == ANSWER
    assert len(fake_llm.requests) == 3
    assert fake_llm.requests[2].body["response_format"]["type"] == "json_object"
    # Another model on the same server has learned nothing.
    assert store.get("openai", "other", llama.base_url).structured == "json_schema"


async def test_a_refused_json_object_falls_back_to_the_schema_in_the_prompt(fake_llm, store, llama):
    store.refuse("openai", "m", llama.base_url, "json_schema")
    fake_llm.script(
        status(400, message="'response_format' of type 'json_object' is not supported"),
        ok('{"goals": ["adapt"], "confidence": 0.66}'),
    )
    result = await llama.complete(make_request("m", schema=PLAN_SCHEMA))
    assert result.parsed == ANSWER
    assert "response_format" not in fake_llm.requests[1].body
    assert "JSON Schema" in fake_llm.requests[1].body["messages"][1]["content"]


async def test_a_server_refusing_tools_is_learned_and_the_agent_answers_without_them(
    fake_llm, store, llama
):
    fake_llm.script(status(400, message="'tools' is not supported for this model"), ok(ANSWER))
    request = dataclasses.replace(
        make_request("m", schema=PLAN_SCHEMA),
        tools=(ToolSpec("read_file", "Read.", {"type": "object"}),),
    )
    result = await llama.complete(request)
    assert result.parsed == ANSWER
    assert "tools" in fake_llm.requests[0].body and "tools" not in fake_llm.requests[1].body
    assert store.get("openai", "m", llama.base_url).tools is False
    # A tool the model must call cannot be dropped: that stays a clear refusal.
    forced = dataclasses.replace(request, tool_choice="read_file")
    with pytest.raises(ProviderBadRequest, match="no tool calling"):
        await llama.complete(forced)


async def test_a_server_refusing_streaming_is_learned_and_answers_whole(fake_llm, store, llama):
    fake_llm.script(
        status(400, message="'stream' is not supported by this server"),
        ok(ANSWER),
        ok(ANSWER),
    )
    pieces = []
    request = dataclasses.replace(make_request("m", schema=PLAN_SCHEMA), on_delta=pieces.append)
    result = await llama.complete(request)
    assert result.parsed == ANSWER
    assert [r.body.get("stream", False) for r in fake_llm.requests] == [True, False]
    assert store.get("openai", "m", llama.base_url).streaming is False
    # The caller still gets the words: the whole answer as one piece.
    assert "".join(p.text for p in pieces) == result.text and len(pieces) == 1
    # The next call knows and asks for no stream, without another refusal.
    await llama.complete(request)
    assert len(fake_llm.requests) == 3 and not fake_llm.requests[2].body.get("stream")


async def test_a_validation_error_in_a_500_is_a_bad_request_and_an_outage_is_transient(
    fake_llm, store, llama
):
    fake_llm.script(status(500, message="1 validation error: messages.0.role input should be"))
    with pytest.raises(ProviderBadRequest):
        await llama.complete(make_request("m", schema=PLAN_SCHEMA))
    fake_llm.script(status(500, message="the GPU fell over"))
    with pytest.raises(ProviderTransientError):
        await llama.complete(make_request("m", schema=PLAN_SCHEMA))
    assert len(fake_llm.requests) == 2  # no fallback, no retry here (the router retries)
    assert store.get("openai", "m", llama.base_url).structured == "json_schema"


def test_refusals_are_remembered_once_and_loaded_by_another_process():
    seen = []
    first = CapabilityStore()
    first.remember_with(on_refuse=lambda *a: seen.append(a), load=lambda: [])
    first.refuse("openai", "m", "http://Llama:8080/v1/", "json_schema", "HTTP 500: nope")
    first.refuse("openai", "m", "http://llama:8080/v1", "json_schema", "again")
    assert seen == [("openai", "http://llama:8080/v1", "m", "json_schema", "HTTP 500: nope")]

    second = CapabilityStore()  # a new process: learns from what the first remembered
    second.remember_with(on_refuse=lambda *a: None, load=lambda: [a[:4] for a in seen])
    assert second.get("openai", "m", "http://llama:8080/v1").structured == "json_object"

    broken = CapabilityStore()
    broken.remember_with(on_refuse=lambda *a: 1 / 0, load=lambda: 1 / 0)
    assert broken.get("openai", "m").structured == "json_schema"  # defaults, logged
    assert broken.refuse("openai", "m", None, "json_schema").structured == "json_object"


async def test_prompt_only_mode_puts_the_schema_in_the_prompt_and_parses_locally(
    fake_llm, store, llama
):
    store.set("openai", "old-ollama", llama.base_url, Capabilities("prompt", False, True))
    fake_llm.script(ok('Here it is:\n```json\n{"goals": ["adapt"], "confidence": 0.66}\n```'))
    result = await llama.complete(make_request("old-ollama", schema=PLAN_SCHEMA))
    assert result.parsed == ANSWER
    body = fake_llm.requests[0].body
    assert "response_format" not in body
    assert [m["role"] for m in body["messages"]] == ["system", "system", "user"]
    assert body["messages"][0]["content"] == "You are terse."
    assert "JSON Schema" in body["messages"][1]["content"]
    assert '"confidence"' in body["messages"][1]["content"]


async def test_json_schema_is_the_default_mode(fake_llm, llama):
    await llama.complete(make_request("vllm-model", schema=PLAN_SCHEMA))
    assert fake_llm.requests[0].body["response_format"]["type"] == "json_schema"


async def test_anthropic_prompt_mode_after_the_answer_tool_was_refused(fake_llm, store):
    backend = AnthropicBackend(
        env={"ANTHROPIC_API_KEY": "k"}, base_url=fake_llm.anthropic_base_url, capabilities=store
    )
    store.refuse("anthropic", "claude-test", backend.base_url, "tool")
    fake_llm.script(ok('{"goals": ["adapt"], "confidence": 0.66}'))
    result = await backend.complete(make_request("claude-test", schema=PLAN_SCHEMA))
    await backend.aclose()
    assert result.parsed == ANSWER
    body = fake_llm.requests[0].body
    assert "tools" not in body
    assert body["system"].startswith("You are terse.\n\nAnswer with one JSON value only")


async def test_a_required_tool_call_to_a_server_without_tools_is_refused(fake_llm, store, llama):
    store.refuse("openai", "m", llama.base_url, "tools")
    request = dataclasses.replace(
        make_request("m"),
        tools=(ToolSpec("read_file", "Read.", {"type": "object"}),),
        tool_choice="required",
    )
    with pytest.raises(ProviderBadRequest, match="no tool calling"):
        await llama.complete(request)
    assert fake_llm.requests == []
