"""codex-cli and claude-cli backends against small fake executables written per test."""

import dataclasses
import json
import os
import time

import pytest

from swarm.providers.base import (
    NoRouteError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
    ProviderTransientError,
    Usage,
)
from swarm.providers.cli_backends import ClaudeCliBackend, CodexCliBackend
from tests.swarm.providers.conftest import PLAN_SCHEMA, fake_tool, make_request


def calls(tmp_path):
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def env_for(var: str, binary) -> dict[str, str]:
    return {var: str(binary), "PATH": os.environ.get("PATH", "")}


CODEX_EVENTS = """
print(json.dumps({"type": "thread.started", "thread_id": "t1"}))
print("not an event line")
print(json.dumps({"type": "item.completed", "item": {"id": "i0", "type": "reasoning", "text": "thinking"}}))
print(json.dumps({"type": "item.completed", "item": {"id": "i1", "type": "agent_message", "text": ANSWER}}))
print(json.dumps({"type": "turn.completed", "usage": {"input_tokens": 120, "cached_input_tokens": 0, "output_tokens": 34}}))
"""


async def test_codex_answers_with_the_last_agent_message(tmp_path):
    answer = json.dumps({"goals": ["a"], "confidence": 0.7})
    tool = fake_tool(tmp_path, "codex", f"ANSWER = {answer!r}\n" + CODEX_EVENTS)
    backend = CodexCliBackend(env=env_for("TEKTON_CODEX_BIN", tool))
    result = await backend.complete(
        make_request("openai/gpt-5-codex", prompt="write the plan", schema=PLAN_SCHEMA)
    )
    assert result.parsed == {"goals": ["a"], "confidence": 0.7}
    assert (result.usage.input_tokens, result.usage.output_tokens) == (120, 34)
    assert result.provider == "codex-cli"
    [call] = calls(tmp_path)
    assert call["argv"][:2] == ["exec", "--json"]
    assert call["argv"][call["argv"].index("--model") + 1] == "gpt-5-codex"
    assert "--output-schema" in call["argv"]
    assert call["argv"][-1] == "-"
    assert "write the plan" in call["stdin"]  # the prompt travels on stdin, not argv
    assert all("write the plan" not in arg for arg in call["argv"])


async def test_claude_cli_reads_the_result_object(tmp_path):
    tool = fake_tool(
        tmp_path,
        "claude",
        """
        print(json.dumps({"type": "result", "subtype": "success", "is_error": False,
                          "result": "```json\\n{\\"goals\\": [\\"b\\"], \\"confidence\\": 0.6}\\n```",
                          "usage": {"input_tokens": 50, "output_tokens": 20}, "total_cost_usd": 0.0123}))
        """,
    )
    backend = ClaudeCliBackend(env=env_for("TEKTON_CLAUDE_BIN", tool))
    result = await backend.complete(make_request("claude-cli/sonnet", schema=PLAN_SCHEMA))
    assert result.parsed == {"goals": ["b"], "confidence": 0.6}
    assert result.cost_usd == pytest.approx(0.0123)
    [call] = calls(tmp_path)
    assert call["argv"] == ["-p", "--output-format", "json", "--model", "sonnet"]
    assert "You are terse." in call["stdin"] and "JSON Schema" in call["stdin"]


async def test_slow_tool_is_killed_on_timeout(tmp_path):
    tool = fake_tool(
        tmp_path,
        "codex",
        """
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pid'), 'w') as fh:
            fh.write(str(os.getpid()))
        time.sleep(30)
        """,
    )
    backend = CodexCliBackend(env=env_for("TEKTON_CODEX_BIN", tool))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="killed"):
        await backend.complete(make_request("codex/gpt-5-codex", timeout=2.0))
    assert time.monotonic() - started < 8
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, not left sleeping


async def test_failing_tool_reports_first_stderr_line_redacted(tmp_path):
    tool = fake_tool(
        tmp_path,
        "claude",
        """
        sys.stderr.write("\\nauth failed for key sk-ant-api03-SECRETSECRETSECRET\\nsecond line\\n")
        sys.exit(1)
        """,
    )
    backend = ClaudeCliBackend(env=env_for("TEKTON_CLAUDE_BIN", tool))
    with pytest.raises(ProviderError) as caught:
        await backend.complete(make_request("claude-cli/sonnet"))
    message = str(caught.value)
    assert "status 1" in message and "auth failed for key" in message
    assert "SECRETSECRET" not in message
    assert "second line" not in message
    assert not caught.value.retryable


async def test_tool_printing_nothing_is_a_response_error(tmp_path):
    tool = fake_tool(
        tmp_path, "codex", 'print(json.dumps({"type": "turn.completed", "usage": {}}))\n'
    )
    backend = CodexCliBackend(env=env_for("TEKTON_CODEX_BIN", tool))
    with pytest.raises(ProviderResponseError):
        await backend.complete(make_request("codex/gpt-5-codex"))


def test_missing_binary_is_a_clear_no_route(tmp_path):
    with pytest.raises(NoRouteError, match="TEKTON_CODEX_BIN") as caught:
        CodexCliBackend(env={"TEKTON_CODEX_BIN": str(tmp_path / "no-such-codex"), "PATH": ""})
    assert "no-such-codex" in str(caught.value)


# --- streaming stdout ----------------------------------------------------------------------

# The tool prints its first event, then waits (up to 5 s) for the marker file the test's
# callback creates on the first delta, and reports whether it saw it: a backend that read
# stdout only at exit would make it wait in vain.
WAIT_FOR_MARKER = """
marker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "marker")
def wait_for_marker():
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not os.path.exists(marker):
        time.sleep(0.02)
    return os.path.exists(marker)
def emit(event):
    print(json.dumps(event), flush=True)
"""


class MarkingDeltas(list):
    def __init__(self, marker):
        super().__init__()
        self.marker = marker

    def __call__(self, delta):
        self.append(delta)
        self.marker.touch()


async def test_codex_streams_agent_messages_as_they_arrive(tmp_path):
    tool = fake_tool(
        tmp_path,
        "codex",
        WAIT_FOR_MARKER
        + """
emit({"type": "thread.started", "thread_id": "t1"})
emit({"type": "item.completed", "item": {"id": "i1", "type": "agent_message", "text": "Looking around first."}})
seen = wait_for_marker()
emit({"type": "item.completed", "item": {"id": "i2", "type": "agent_message", "text": "FINAL seen=" + str(seen)}})
emit({"type": "turn.completed", "usage": {"input_tokens": 300, "cached_input_tokens": 200, "output_tokens": 9}})
""",
    )
    backend = CodexCliBackend(env=env_for("TEKTON_CODEX_BIN", tool))
    deltas = MarkingDeltas(tmp_path / "marker")
    request = dataclasses.replace(make_request("codex/gpt-5-codex"), on_delta=deltas)
    result = await backend.complete(request)
    assert result.text == "FINAL seen=True"
    assert [(d.text, d.restart) for d in deltas] == [
        ("Looking around first.", False),
        ("", True),  # the second message replaced the first
        ("FINAL seen=True", False),
    ]
    assert result.usage == Usage(300, 9, cached_input_tokens=200)


async def test_claude_cli_streams_text_deltas(tmp_path):
    tool = fake_tool(
        tmp_path,
        "claude",
        WAIT_FOR_MARKER
        + """
assert "stream-json" in sys.argv and "--include-partial-messages" in sys.argv and "--verbose" in sys.argv
emit({"type": "system", "subtype": "init", "session_id": "s1"})
emit({"type": "stream_event", "event": {"type": "message_start", "message": {"id": "m1"}}})
emit({"type": "stream_event", "event": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}})
seen = wait_for_marker()
emit({"type": "stream_event", "event": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " seen=" + str(seen)}}})
emit({"type": "assistant", "message": {"content": [{"type": "text", "text": "Hello seen=" + str(seen)}]}})
emit({"type": "result", "subtype": "success", "is_error": False, "result": "Hello seen=" + str(seen),
      "usage": {"input_tokens": 10, "cache_read_input_tokens": 900, "cache_creation_input_tokens": 50, "output_tokens": 4},
      "total_cost_usd": 0.004})
""",
    )
    backend = ClaudeCliBackend(env=env_for("TEKTON_CLAUDE_BIN", tool))
    deltas = MarkingDeltas(tmp_path / "marker")
    result = await backend.complete(
        dataclasses.replace(make_request("claude-cli/sonnet"), on_delta=deltas)
    )
    assert result.text == "Hello seen=True"
    assert [d.text for d in deltas] == ["Hello", " seen=True"]
    assert result.usage == Usage(960, 4, cached_input_tokens=900, cache_write_tokens=50)
    assert result.cost_usd == pytest.approx(0.004)
    [call] = calls(tmp_path)
    assert call["argv"][:3] == ["-p", "--output-format", "stream-json"]


async def test_claude_cli_without_a_callback_keeps_the_json_result(tmp_path):
    tool = fake_tool(
        tmp_path,
        "claude",
        'print(json.dumps({"type": "result", "is_error": False, "result": "ok", "usage": {}}))\n',
    )
    backend = ClaudeCliBackend(env=env_for("TEKTON_CLAUDE_BIN", tool))
    assert (await backend.complete(make_request("claude-cli/sonnet"))).text == "ok"
    [call] = calls(tmp_path)
    assert call["argv"][:3] == ["-p", "--output-format", "json"]


async def test_claude_cli_stream_cut_before_the_result_is_retryable(tmp_path):
    tool = fake_tool(
        tmp_path,
        "claude",
        """
print(json.dumps({"type": "stream_event", "event": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Half"}}}))
""",
    )
    backend = ClaudeCliBackend(env=env_for("TEKTON_CLAUDE_BIN", tool))
    deltas = []
    with pytest.raises(ProviderTransientError, match="before the result"):
        await backend.complete(
            dataclasses.replace(make_request("claude-cli/sonnet"), on_delta=deltas.append)
        )
    assert [d.text for d in deltas] == ["Half"]


async def test_a_tool_that_streams_no_deltas_hands_over_its_answer_once(tmp_path):
    # A claude release without partial messages: whole messages, then the result.
    tool = fake_tool(
        tmp_path,
        "claude",
        """
print(json.dumps({"type": "system", "subtype": "init"}))
print(json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": "whole"}]}}))
print(json.dumps({"type": "result", "is_error": False, "result": "whole", "usage": {}}))
""",
    )
    backend = ClaudeCliBackend(env=env_for("TEKTON_CLAUDE_BIN", tool))
    deltas = []
    result = await backend.complete(
        dataclasses.replace(make_request("claude-cli/sonnet"), on_delta=deltas.append)
    )
    assert result.text == "whole"
    assert [(d.text, d.restart) for d in deltas] == [("whole", False)]


async def test_long_event_lines_are_read_whole(tmp_path):
    big = "x" * 300_000
    tool = fake_tool(
        tmp_path,
        "codex",
        f"""
print(json.dumps({{"type": "item.completed", "item": {{"type": "agent_message", "text": "{big}"}}}}), flush=True)
print(json.dumps({{"type": "turn.completed", "usage": {{}}}}))
""",
    )
    backend = CodexCliBackend(env=env_for("TEKTON_CODEX_BIN", tool))
    deltas = []
    result = await backend.complete(
        dataclasses.replace(make_request("codex/gpt-5-codex"), on_delta=deltas.append)
    )
    assert result.text == big
    assert [d.text for d in deltas] == [big]


async def test_a_cli_tool_runs_in_the_workspace_with_a_scrubbed_environment(tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    tool = fake_tool(
        tmp_path,
        "codex",
        "ANSWER = json.dumps({'cwd': os.getcwd(), 'env': sorted(os.environ)})\n" + CODEX_EVENTS,
    )
    env = {
        **env_for("TEKTON_CODEX_BIN", tool),
        "OPENAI_API_KEY": "sk-its-own-key",
        "ANTHROPIC_API_KEY": "sk-ant-someone-elses",
        "DATABASE_URL": "postgres://u:p@db/tekton",
        "DJANGO_SECRET_KEY": "not-for-tools",
    }
    request = dataclasses.replace(
        make_request("codex/gpt-5-codex", schema={"type": "object"}),
        metadata={"stage": "code", "role": "proponent", "round": 0, "workdir": str(workspace)},
    )
    seen = (await CodexCliBackend(env=env).complete(request)).parsed
    assert seen["cwd"] == str(workspace)
    assert "OPENAI_API_KEY" in seen["env"]  # the tool's own login
    for leaked in ("ANTHROPIC_API_KEY", "DATABASE_URL", "DJANGO_SECRET_KEY", "TEKTON_CODEX_BIN"):
        assert leaked not in seen["env"]


async def test_without_a_workspace_a_cli_tool_runs_in_an_empty_folder(tmp_path):
    tool = fake_tool(
        tmp_path, "codex", "ANSWER = json.dumps({'files': os.listdir('.')})\n" + CODEX_EVENTS
    )
    result = await CodexCliBackend(env=env_for("TEKTON_CODEX_BIN", tool)).complete(
        make_request("codex/gpt-5-codex", schema={"type": "object"})
    )
    assert result.parsed["files"] in ([], ["schema.json"])
