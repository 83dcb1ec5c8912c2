"""Native tool calling through both official SDKs at the fake server: definitions on the
wire in each vendor's shape, calls parsed into blocks, results sent back on the next call."""

import dataclasses

import pytest

from swarm.providers.anthropic_backend import AnthropicBackend
from swarm.providers.base import (
    STOP_END,
    STOP_TOOL_CALLS,
    Message,
    ProviderBadRequest,
    TextBlock,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from swarm.providers.cli_backends import CodexCliBackend
from swarm.providers.offline import OfflineProvider
from swarm.providers.openai_backend import OpenAIBackend
from tests.fakes.llm_server import ok, tool_calls
from tests.swarm.providers.conftest import PLAN_SCHEMA, fake_tool, make_request

READ_FILE = ToolSpec(
    name="read_file",
    description="Read a file of the repository.",
    input_schema={
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
    },
)
GIT_GREP = ToolSpec(
    name="git_grep",
    description="Search tracked files.",
    input_schema={"type": "object", "properties": {"pattern": {"type": "string"}}},
)


def tool_request(model: str, **kw):
    return dataclasses.replace(
        make_request(model, prompt="What does app/main.py do?"), tools=(READ_FILE, GIT_GREP), **kw
    )


@pytest.fixture
async def anthropic_backend(fake_llm):
    env = {"ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef"}
    backend = AnthropicBackend(env=env, base_url=fake_llm.anthropic_base_url)
    yield backend
    await backend.aclose()


@pytest.fixture
async def openai_backend(fake_llm):
    backend = OpenAIBackend(env={"OPENAI_API_KEY": "k"}, base_url=fake_llm.openai_base_url)
    yield backend
    await backend.aclose()


async def test_anthropic_tool_round_trip(fake_llm, anthropic_backend):
    fake_llm.script(
        tool_calls(
            ("read_file", {"path": "app/main.py"}),
            ("git_grep", {"pattern": "health"}),
            text="Let me look.",
        ),
        ok("It defines health(), which returns 'ok'."),
    )
    first_request = tool_request("claude-test")
    first = await anthropic_backend.complete(first_request)

    sent = fake_llm.requests[0].body
    assert sent["tools"] == [
        {
            "name": "read_file",
            "description": "Read a file of the repository.",
            "input_schema": READ_FILE.input_schema,
        },
        {
            "name": "git_grep",
            "description": "Search tracked files.",
            "input_schema": GIT_GREP.input_schema,
        },
    ]
    assert "tool_choice" not in sent  # the model decides
    assert first.stop_reason == STOP_TOOL_CALLS
    assert first.text == "Let me look."
    assert first.tool_calls == (
        ToolCall("toolu_fake_1", "read_file", {"path": "app/main.py"}),
        ToolCall("toolu_fake_2", "git_grep", {"pattern": "health"}),
    )

    results = Message(
        "user",
        (
            ToolResult("toolu_fake_1", "def health():\n    return 'ok'\n"),
            ToolResult("toolu_fake_2", "grep: bad pattern", is_error=True),
        ),
    )
    second_request = dataclasses.replace(
        first_request,
        messages=(*first_request.messages, first.assistant_message(), results),
    )
    second = await anthropic_backend.complete(second_request)
    assert second.stop_reason == STOP_END
    assert second.tool_calls == ()
    assert second.text == "It defines health(), which returns 'ok'."

    wire = fake_llm.requests[1].body["messages"]
    assert wire[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me look."},
            {
                "type": "tool_use",
                "id": "toolu_fake_1",
                "name": "read_file",
                "input": {"path": "app/main.py"},
            },
            {
                "type": "tool_use",
                "id": "toolu_fake_2",
                "name": "git_grep",
                "input": {"pattern": "health"},
            },
        ],
    }
    assert wire[2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_fake_1",
                "content": "def health():\n    return 'ok'\n",
            },
            {
                "type": "tool_result",
                "tool_use_id": "toolu_fake_2",
                "content": "grep: bad pattern",
                "is_error": True,
            },
        ],
    }


async def test_openai_tool_round_trip(fake_llm, openai_backend):
    fake_llm.script(
        tool_calls(("read_file", {"path": "app/main.py"}), ("git_grep", {"pattern": "health"})),
        ok("It defines health()."),
    )
    first_request = tool_request("gpt-4o")
    first = await openai_backend.complete(first_request)

    sent = fake_llm.requests[0].body
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Read a file of the repository.",
                "parameters": READ_FILE.input_schema,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "git_grep",
                "description": "Search tracked files.",
                "parameters": GIT_GREP.input_schema,
            },
        },
    ]
    assert first.stop_reason == STOP_TOOL_CALLS
    assert first.text == ""
    assert first.tool_calls == (
        ToolCall("call_fake_1", "read_file", {"path": "app/main.py"}),
        ToolCall("call_fake_2", "git_grep", {"pattern": "health"}),
    )

    results = Message(
        "user",
        (
            ToolResult("call_fake_1", "def health(): ..."),
            ToolResult("call_fake_2", "no matches", is_error=True),
            TextBlock("Keep it short."),
        ),
    )
    second = await openai_backend.complete(
        dataclasses.replace(
            first_request,
            messages=(*first_request.messages, first.assistant_message(), results),
        )
    )
    assert second.text == "It defines health()."
    wire = fake_llm.requests[1].body["messages"]
    assert wire[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_fake_1",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "app/main.py"}'},
            },
            {
                "id": "call_fake_2",
                "type": "function",
                "function": {"name": "git_grep", "arguments": '{"pattern": "health"}'},
            },
        ],
    }
    assert wire[3:] == [
        {"role": "tool", "tool_call_id": "call_fake_1", "content": "def health(): ..."},
        {"role": "tool", "tool_call_id": "call_fake_2", "content": "[tool error] no matches"},
        {"role": "user", "content": "Keep it short."},
    ]


@pytest.mark.parametrize(
    ("choice", "anthropic_wire", "openai_wire"),
    [
        ("required", {"type": "any"}, "required"),
        ("none", {"type": "none"}, "none"),
        (
            "read_file",
            {"type": "tool", "name": "read_file"},
            {"type": "function", "function": {"name": "read_file"}},
        ),
    ],
)
async def test_tool_choice_in_each_vendors_words(
    fake_llm, anthropic_backend, openai_backend, choice, anthropic_wire, openai_wire
):
    await anthropic_backend.complete(tool_request("claude-test", tool_choice=choice))
    await openai_backend.complete(tool_request("gpt-4o", tool_choice=choice))
    assert fake_llm.requests[0].body["tool_choice"] == anthropic_wire
    assert fake_llm.requests[1].body["tool_choice"] == openai_wire


async def test_anthropic_tools_with_a_structured_answer(fake_llm, anthropic_backend):
    """With tools and a schema, the answer tool joins the caller's and tool_choice is any:
    a call of a real tool is a tool call, a call of the answer tool is the answer."""
    fake_llm.script(
        tool_calls(("read_file", {"path": "README.md"})),
        ok({"goals": ["read it"], "confidence": 0.7}),
    )
    request = tool_request("claude-test", json_schema=PLAN_SCHEMA)
    first = await anthropic_backend.complete(request)
    assert first.stop_reason == STOP_TOOL_CALLS
    assert first.parsed is None
    sent = fake_llm.requests[0].body
    assert [t["name"] for t in sent["tools"]] == ["read_file", "git_grep", "plan"]
    assert sent["tool_choice"] == {"type": "any"}

    second = await anthropic_backend.complete(request)
    assert second.stop_reason == STOP_END
    assert second.tool_calls == ()
    assert second.parsed == {"goals": ["read it"], "confidence": 0.7}


async def test_openai_tools_with_a_structured_answer(fake_llm, openai_backend):
    fake_llm.script(ok({"goals": ["g"], "confidence": 0.5}))
    result = await openai_backend.complete(tool_request("gpt-4o", json_schema=PLAN_SCHEMA))
    assert result.parsed == {"goals": ["g"], "confidence": 0.5}
    sent = fake_llm.requests[0].body
    assert sent["response_format"]["type"] == "json_schema"
    assert len(sent["tools"]) == 2


@pytest.mark.parametrize(
    ("tools", "choice", "message"),
    [
        ((READ_FILE, READ_FILE), None, "share a name"),
        ((READ_FILE,), "write_file", "names no tool"),
    ],
)
async def test_bad_tool_requests_are_refused_before_any_call(
    fake_llm, anthropic_backend, openai_backend, tools, choice, message
):
    request = dataclasses.replace(make_request(), tools=tools, tool_choice=choice)
    for backend in (anthropic_backend, openai_backend):
        with pytest.raises(ProviderBadRequest, match=message):
            await backend.complete(request)
    assert fake_llm.requests == []


async def test_anthropic_tool_named_like_the_answer_tool_is_refused(anthropic_backend):
    clash = ToolSpec("plan", "clashes with schema_name", {"type": "object"})
    request = dataclasses.replace(make_request(schema=PLAN_SCHEMA), tools=(clash,))
    with pytest.raises(ProviderBadRequest, match="structured answer"):
        await anthropic_backend.complete(request)


async def test_offline_accepts_tools_and_answers_as_without_them():
    provider = OfflineProvider(latency_ms=0)
    plain = make_request("offline/model", prompt="hi")
    with_tools = dataclasses.replace(plain, tools=(READ_FILE,), tool_choice="auto")
    a, b = await provider.complete(plain), await provider.complete(with_tools)
    assert a.text == b.text
    assert b.tool_calls == ()
    assert b.stop_reason == STOP_END


async def test_offline_answers_a_conversation_that_holds_tool_blocks():
    provider = OfflineProvider(latency_ms=0)
    call = ToolCall("c1", "read_file", {"path": "a.py"})
    request = dataclasses.replace(
        make_request("offline/model"),
        messages=(
            Message("user", "look at a.py"),
            Message("assistant", (call,)),
            Message("user", (ToolResult("c1", "x = 1"), TextBlock("and now?"))),
        ),
        tools=(READ_FILE,),
    )
    first, again = await provider.complete(request), await provider.complete(request)
    assert "and now?" in first.text
    assert first.text == again.text


async def test_cli_backends_refuse_tools(tmp_path):
    tool = fake_tool(tmp_path, "codex", "print('')\n")
    backend = CodexCliBackend(env={"TEKTON_CODEX_BIN": str(tool), "PATH": ""})
    assert backend.capabilities("codex/gpt-5-codex").tools is False
    with pytest.raises(ProviderBadRequest, match="no tool definitions"):
        await backend.complete(tool_request("codex/gpt-5-codex"))
    assert not (tmp_path / "calls.jsonl").exists()  # the tool never ran
