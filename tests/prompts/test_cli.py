"""`tekton ask`, `tekton prompt` and `tekton memory` in-process: the offline backend, the
official SDKs against the fake server, fake claude and codex command lines; every
invocation journaled and a row, redacted (issue 12)."""

from __future__ import annotations

import json
import os

import pytest

from prompts.models import PromptInvocation
from tests.cli import tekton
from tests.fakes.llm_server import FakeLlmServer, ok, status
from tests.swarm.providers.conftest import fake_tool

pytestmark = pytest.mark.django_db

KEY = "sk-ant-api03-PLANTEDsecretKEY0123456789abcdef"


@pytest.fixture(autouse=True)
def memory(settings, tmp_path):
    settings.TEKTON_MEMORY_DIR = tmp_path / "memory-root"
    return tmp_path / "mem"


@pytest.fixture
def fake_llm(monkeypatch):
    server = FakeLlmServer().start()
    monkeypatch.setenv("TEKTON_LLM_BACKEND", "auto")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key-000000")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai-0000000000")
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    yield server
    server.stop()


def _all_text(root) -> str:
    return "".join(
        p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    )


def test_ask_claude_offline_is_labelled_journaled_and_redacted(memory, tmp_path):
    context = tmp_path / "notes.txt"
    context.write_text(f"the key in .env is {KEY}\n")
    code, out, err = tekton(
        "ask",
        "claude",
        f"why is {KEY} refused?",
        "--memory",
        str(memory),
        "--context",
        str(context),
    )
    assert code == 0, err
    assert "[offline]" in out
    assert "answered by the offline backend" in err
    row = PromptInvocation.objects.get()
    assert (row.status, row.agent, row.provider) == ("ok", "claude", "offline")
    assert row.model == "anthropic/claude-sonnet-4.6"
    assert row.journal_id and (memory / "invocations" / row.journal_id / "context.md").exists()
    for text in (row.prompt, row.context, row.response, json.dumps(row.attempts)):
        assert KEY not in text
    assert "[API_KEY#1]" in row.prompt
    assert KEY not in _all_text(memory)


def test_ask_claude_streams_through_the_sdk_with_tokens_and_cost(fake_llm, memory):
    fake_llm.script(ok("a streamed answer", input_tokens=1000, output_tokens=100))
    code, out, err = tekton("ask", "claude", "hello", "--memory", str(memory), "--no-memory")
    assert code == 0, err
    assert out == "a streamed answer\n"
    [request] = fake_llm.requests
    assert request.body["stream"] is True
    assert request.body["model"] == "claude-sonnet-4-6"
    row = PromptInvocation.objects.get()
    assert (row.provider, row.tokens_in, row.tokens_out) == ("anthropic", 1000, 100)
    assert float(row.cost_usd) == pytest.approx(0.0045)
    meta = json.loads((memory / "latest" / "metadata.json").read_text())
    assert meta["cost_usd"] == pytest.approx(0.0045)


def test_prompt_does_not_fall_back_on_401_and_exits_1(fake_llm, memory):
    fake_llm.script(status(401, message="invalid x-api-key"))
    code, out, err = tekton("prompt", "fix the bug in app.py", "--memory", str(memory))
    assert code == 1
    assert "HTTP 401" in err and "Traceback" not in err
    assert len(fake_llm.requests) == 1
    row = PromptInvocation.objects.get()
    assert row.status == "failed" and row.intent == "code"
    assert [a["outcome"] for a in row.attempts] == ["stopped"]
    assert "· prompt · FAILED" in (memory / "journal.md").read_text()


def test_recent_memory_goes_along_unless_no_memory(fake_llm, memory):
    tekton("ask", "claude", "remember the pelican", "--memory", str(memory))
    tekton("ask", "claude", "second question", "--memory", str(memory))
    tekton("ask", "claude", "third question", "--memory", str(memory), "--no-memory")
    first, second, third = (json.dumps(r.body) for r in fake_llm.requests)
    assert "remember the pelican" not in first.split("remember the pelican", 1)[1]
    assert "remember the pelican" in second
    assert "remember the pelican" not in third


def test_explain_shows_intent_and_chain_and_writes_nothing(memory):
    code, out, err = tekton("prompt", "design the schema", "--explain", "--memory", str(memory))
    assert code == 0, err
    assert out.startswith("intent: design")
    assert "1. anthropic/claude-opus-4.6 -> offline" in out
    assert not memory.exists() and not PromptInvocation.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ask", "claude", "  "), "error: the prompt is empty"),
        (("ask", "claude", "hi", "--context", "/no/such/file"), "does not exist"),
        (("ask", "claude", "hi", "--context", "BINARY"), "is binary"),
        (("prompt", "hi", "--intent", "poetry"), "unknown intent 'poetry'"),
        (("ask", "claude", "hi", "--temperature", "5"), "--temperature must be between 0 and 2"),
    ],
)
def test_usage_errors_are_one_line_exit_2_and_write_nothing(memory, tmp_path, args, message):
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02")
    args = tuple(str(binary) if a == "BINARY" else a for a in args)
    code, out, err = tekton(*args, "--memory", str(memory))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not memory.exists() and not PromptInvocation.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ask", "claude", "hi", "--context", "LONG"), "cannot be read: File name too long"),
        (("ask", "claude", "hi", "--memory", "LONG"), "has a component of 300 bytes"),
        (("prompt", "hi", "--memory", "LONG"), "has a component of 300 bytes"),
        (("ask", "diamond", "g", "--memory", "LONG"), "has a component of 300 bytes"),
        (("memory", "show", "--memory", "LONG"), "has a component of 300 bytes"),
        (("memory", "search", "x", "--memory", "LONG"), "has a component of 300 bytes"),
        (("memory", "prune", "--older-than", "1d", "--memory", "LONG"), "component of 300"),
    ],
)
def test_paths_the_filesystem_cannot_take_are_one_line_exit_2(tmp_path, args, message):
    long = str(tmp_path / ("a" * 300))
    code, _, err = tekton(*(long if a == "LONG" else a for a in args))
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and not PromptInvocation.objects.exists()


def test_unwritable_memory_directory_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = tekton("ask", "claude", "hi", "--memory", str(blocker / "mem"))
    assert code == 2 and "is not writable" in err
    assert not PromptInvocation.objects.exists()


CLAUDE_STREAM = """
def line(obj):
    print(json.dumps(obj), flush=True)
line({"type": "system", "subtype": "init"})
line({"type": "stream_event", "event": {"type": "message_start"}})
for piece in ("Hello ", "from ", "claude"):
    line({"type": "stream_event", "event": {"type": "content_block_delta", "delta": {"type": "text_delta", "text": piece}}})
line({"type": "result", "result": "Hello from claude", "usage": {"input_tokens": 5, "output_tokens": 3}, "total_cost_usd": 0.01})
"""


def test_claude_command_line_streams_and_a_failing_one_exits_1(memory, tmp_path, monkeypatch):
    monkeypatch.setenv("TEKTON_LLM_BACKEND", "auto")
    tool = fake_tool(tmp_path, "claude", CLAUDE_STREAM)
    monkeypatch.setenv("TEKTON_CLAUDE_BIN", str(tool))
    code, out, err = tekton(
        "ask", "claude", "hi", "--model", "claude-cli/sonnet", "--memory", str(memory)
    )
    assert code == 0, err
    assert out == "Hello from claude\n"
    assert PromptInvocation.objects.get().provider == "claude-cli"
    (tmp_path / "claude").write_text(
        f"#!{os.sys.executable}\nimport sys\nprint('not logged in', file=sys.stderr)\nsys.exit(1)\n"
    )
    code, out, err = tekton(
        "ask", "claude", "hi", "--model", "claude-cli/sonnet", "--memory", str(memory)
    )
    assert code == 1 and "exited with status 1: not logged in" in err
    assert PromptInvocation.objects.order_by("-pk").first().status == "failed"


def test_codex_command_line_answers_and_keeps_its_output(memory, tmp_path, monkeypatch):
    tool = fake_tool(
        tmp_path,
        "codex",
        'print("warming up", file=sys.stderr)\n'
        'print(json.dumps({"type": "item.completed", "item": {"type": "agent_message", "text": "renamed"}}))\n',
    )
    monkeypatch.setenv("TEKTON_LLM_BACKEND", "auto")
    monkeypatch.setenv("TEKTON_CODEX_BIN", str(tool))
    code, out, err = tekton("ask", "codex", "rename foo", "--memory", str(memory))
    assert code == 0, err
    assert out == "renamed\n"
    assert (memory / "latest" / "stderr.txt").read_text() == "warming up\n"


def test_memory_show_search_and_prune(memory):
    for text in ("about pelicans", "about herons"):
        assert tekton("ask", "claude", text, "--memory", str(memory))[0] == 0
    code, out, _ = tekton("memory", "show", "1", "--memory", str(memory))
    assert code == 0 and "about herons" in out and "about pelicans" not in out
    code, out, _ = tekton("memory", "search", "PELICAN", "--memory", str(memory))
    assert code == 0 and "about pelicans" in out and "herons" not in out
    assert tekton("memory", "search", "albatross", "--memory", str(memory))[0] == 1
    code, out, _ = tekton("memory", "prune", "--older-than", "14d", "--memory", str(memory))
    assert code == 0 and "removed 0 invocation(s)" in out
    code, _, err = tekton("memory", "prune", "--older-than", "soon", "--memory", str(memory))
    assert code == 2 and "like 14d" in err


def test_options_before_the_agent_and_a_recorded_call_replays(memory, tmp_path, monkeypatch):
    cassette = tmp_path / "calls.jsonl"
    code, first, err = tekton(
        "ask", "--memory", str(memory), "--no-memory", "claude", "hi", "--record", str(cassette)
    )
    assert code == 0, err
    assert (memory / "journal.md").exists() and cassette.exists()
    monkeypatch.setenv("TEKTON_LLM_BACKEND", "replay")
    monkeypatch.setenv("TEKTON_REPLAY_PATH", str(cassette))
    code, again, err = tekton("ask", "--memory", str(memory), "--no-memory", "claude", "hi")
    assert code == 0, err
    assert again == first
    assert PromptInvocation.objects.order_by("-pk").first().provider == "replay"


def test_without_keys_auto_mode_answers_offline_and_says_why(memory, monkeypatch):
    monkeypatch.setenv("TEKTON_LLM_BACKEND", "auto")
    for name in (
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "OPENROUTER_API_KEY",
        "PORTKEY_API_KEY",
        "AIMLAPI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    code, out, err = tekton("ask", "claude", "hi", "--memory", str(memory))
    assert code == 0, err
    assert "(answered by the offline backend: no API key is set;" in err


def test_agno_streams_each_step_on_its_own_lines(memory):
    code, out, err = tekton("ask", "agno", "add a flag", "--memory", str(memory))
    assert code == 0, err
    assert [line for line in err.splitlines() if line.startswith("-- ")] == [
        "-- planner (anthropic/claude-sonnet-4.6)",
        "-- coder (anthropic/claude-sonnet-4.6)",
        "-- reviewer (anthropic/claude-sonnet-4.6)",
    ]
    assert len([line for line in out.splitlines() if line.startswith("[offline]")]) == 3
    row = PromptInvocation.objects.get()
    assert (
        row.status == "ok"
        and [a["model"] for a in row.attempts] == ["anthropic/claude-sonnet-4.6"] * 3
    )


def test_memory_prune_removes_those_invocations_rows_too_yours_unless_staff(
    memory, monkeypatch, django_user_model
):
    import getpass
    from datetime import timedelta

    import swarm.frontdoor.journal as journal_module
    from prompts.models import PromptEvent
    from prompts.services import prompt_invocation_create

    for text in ("about pelicans", "about herons"):
        assert tekton("ask", "claude", text, "--memory", str(memory))[0] == 0
    mine = list(PromptInvocation.objects.order_by("pk"))
    assert len(mine) == 2 and all(r.journal_id for r in mine)
    # Another user's invocation whose folder in her own journal has the same name.
    eve = django_user_model.objects.create_user("eve", password="pw-for-tests-only")
    theirs = prompt_invocation_create(agent="claude", prompt="eve's", owner=eve)
    PromptInvocation.objects.filter(pk=theirs.pk).update(journal_id=mine[0].journal_id)
    later = journal_module._now() + timedelta(days=15)
    monkeypatch.setattr(journal_module, "_now", lambda: later)
    prune = ("memory", "prune", "--older-than", "14d", "--memory", str(memory))

    code, out, _ = tekton(*prune, "--dry-run")
    assert code == 0
    assert "would remove 2 invocation(s)" in out and "and 2 database row(s)" in out
    assert PromptInvocation.objects.count() == 3
    assert len(list((memory / "invocations").iterdir())) == 2

    code, out, _ = tekton(*prune)
    assert code == 0 and "removed 2 invocation(s)" in out and "and 2 database row(s)" in out
    assert list(PromptInvocation.objects.values_list("pk", flat=True)) == [theirs.pk]
    assert not PromptEvent.objects.exclude(invocation=theirs).exists()
    assert list((memory / "invocations").iterdir()) == []

    # A staff user of this login's name prunes anyone's rows of the folders it removes.
    assert tekton("ask", "claude", "about gulls", "--memory", str(memory))[0] == 0
    gulls = PromptInvocation.objects.exclude(pk=theirs.pk).get()
    PromptInvocation.objects.filter(pk=theirs.pk).update(journal_id=gulls.journal_id)
    django_user_model.objects.create_user(getpass.getuser(), password="x", is_staff=True)
    monkeypatch.setattr(journal_module, "_now", lambda: later + timedelta(days=15))
    code, out, _ = tekton(*prune)
    assert code == 0 and "removed 1 invocation(s)" in out and "and 2 database row(s)" in out
    assert not PromptInvocation.objects.exists()
