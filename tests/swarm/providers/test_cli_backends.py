"""codex-cli and claude-cli backends against small fake executables written per test."""

import json
import os
import time

import pytest

from swarm.providers.base import NoRouteError, ProviderError, ProviderResponseError, ProviderTimeout
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
