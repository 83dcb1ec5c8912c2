"""The single-prompt front door (swarm.frontdoor): intent rules, chains that fall back
through the official SDKs against the fake server, the agno chain, the codex command
line against fake executables, and the memory journal with its redaction (issue 12)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess

import pytest

from swarm.frontdoor.chains import chain_complete, chains_merge
from swarm.frontdoor.intent import intent_classify
from swarm.frontdoor.invoke import InvokeSpec, UsageProblem, invoke, retry_options_for
from swarm.frontdoor.journal import Journal, JournalError, duration_parse
from swarm.providers import router_build
from swarm.providers.base import CompletionRequest, Message, ProviderAuthError
from tests.fakes.llm_server import FakeLlmServer, ok, status
from tests.swarm.providers.conftest import fake_tool

KEY = "sk-ant-api03-PLANTEDsecretKEY0123456789abcdef"


@pytest.fixture
def fake_llm():
    server = FakeLlmServer().start()
    yield server
    server.stop()


async def _no_sleep(_seconds: float) -> None:
    return None


def _router(server, **env):
    routes = [
        {
            "match": "anthropic/*",
            "backend": "anthropic",
            "base_url": server.anthropic_base_url,
            "key_env": "ANTHROPIC_API_KEY",
            "strip_prefix": True,
        },
        {
            "match": "openai/*",
            "backend": "openai",
            "base_url": server.openai_base_url,
            "key_env": "OPENAI_API_KEY",
            "strip_prefix": True,
        },
    ]
    return router_build(
        routes=routes,
        env={"ANTHROPIC_API_KEY": "sk-ant-test-key-0000", "OPENAI_API_KEY": "sk-test", **env},
        backend_override="auto",
        retry_options={"sleep": _no_sleep},
    )


def _request(text="hello"):
    return CompletionRequest(model="x/y", messages=(Message("user", text),), timeout=5)


def _files_text(root) -> str:
    return "".join(
        p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    )


# --- intent -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("fix the bug in parse_args in cli.py, the traceback says KeyError", "code"),
        ("what architecture and schema should the billing service have? trade-offs", "design"),
        ("compare these two approaches and evaluate the risks", "analyze"),
        ("where is the retry policy defined? find every reference to it", "search"),
        ("think hard and prove, step by step, that the scheduler terminates", "deep"),
        ("quickly: yes or no", "fast"),
        ("capital of France?", "fast"),
        (
            "I would like to hear your thoughts about the upcoming team offsite and what "
            "we should do on the second afternoon",
            "general",
        ),
    ],
)
def test_intent_rules_pick_the_documented_intent(text, intent):
    assert intent_classify(text).intent == intent


def test_intent_override_wins_and_an_unknown_one_is_refused():
    assert intent_classify("fix the bug", override="deep").intent == "deep"
    with pytest.raises(ValueError, match="intents: code, design"):
        intent_classify("x", override="poetry")


def test_chain_settings_replace_one_intent_and_refuse_garbage():
    chains = chains_merge({"fast": ["offline/a", "offline/b"]})
    assert chains["fast"] == ("offline/a", "offline/b")
    assert chains["code"][0].startswith("anthropic/")
    with pytest.raises(ValueError):
        chains_merge({"fast": "offline/a"})


# --- chains through the SDKs --------------------------------------------------------------
async def test_chain_falls_back_when_the_first_provider_answers_500_after_its_retries(fake_llm):
    fake_llm.script(*[status(500)] * 4, ok("answer from the second model"))
    router = _router(fake_llm)
    result = await chain_complete(
        router, _request(), ["anthropic/claude-sonnet-4.6", "openai/gpt-4.1"]
    )
    assert result.completion is not None
    assert result.completion.text == "answer from the second model"
    assert result.completion.model == "openai/gpt-4.1"
    first, second = result.attempts
    assert (first.outcome, first.calls) == ("failed", 4)
    assert "HTTP 500" in first.detail
    assert (second.outcome, second.detail) == ("ok", "openai")
    paths = [r.path for r in fake_llm.requests]
    assert paths == ["/v1/messages"] * 4 + ["/v1/chat/completions"]


async def test_chain_stops_on_401_without_trying_the_next_model(fake_llm):
    fake_llm.script(status(401, message="invalid x-api-key"))
    router = _router(fake_llm)
    result = await chain_complete(
        router, _request(), ["anthropic/claude-sonnet-4.6", "openai/gpt-4.1"]
    )
    assert result.completion is None
    assert isinstance(result.error, ProviderAuthError)
    assert [a.outcome for a in result.attempts] == ["stopped"]
    assert len(fake_llm.requests) == 1


async def test_prompt_journals_the_chain_it_tried(fake_llm, tmp_path):
    fake_llm.script(*[status(503)] * 4, ok("fallback answer"))
    journal = Journal(tmp_path / "mem")
    said: list[str] = []
    spec = InvokeSpec(
        kind="prompt",
        text="fix the failing test",
        chains={"code": ["anthropic/claude-sonnet-4.6", "openai/gpt-4.1"]},
    )
    outcome = await invoke(spec, completer=_router(fake_llm), journal=journal, say=said.append)
    assert outcome.outcome == "OK" and outcome.response == "fallback answer"
    assert outcome.intent == "code"
    assert any("anthropic/claude-sonnet-4.6: failed" in s and "next model" in s for s in said)
    meta = json.loads((tmp_path / "mem" / "latest" / "metadata.json").read_text())
    assert [a["outcome"] for a in meta["attempts"]] == ["failed", "ok"]
    assert meta["provider"] == "openai" and meta["model"] == "openai/gpt-4.1"
    assert (meta["tokens_in"], meta["tokens_out"]) == (11, 7)
    assert meta["cost_usd"] > 0  # gpt-4.1 is priced
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "mem" / "events.jsonl").open()]
    assert kinds == ["start", "attempt", "attempt", "end"]


# --- agno ---------------------------------------------------------------------------------
async def test_agno_runs_planner_coder_reviewer_each_seeing_the_previous_answer(fake_llm, tmp_path):
    fake_llm.script(ok("PLAN: 1. add a flag"), ok("CODE: def flag(): ..."), ok("VERDICT: APPROVE"))
    spec = InvokeSpec(kind="agno", text="add a --verbose flag", model="openai/gpt-4.1")
    outcome = await invoke(spec, completer=_router(fake_llm), journal=Journal(tmp_path / "m"))
    assert outcome.outcome == "OK"
    assert [a["detail"].split()[0] for a in outcome.attempts] == ["planner", "coder", "reviewer"]
    bodies = [json.dumps(r.body) for r in fake_llm.requests]
    assert "PLAN: 1. add a flag" not in bodies[0]
    assert "PLAN: 1. add a flag" in bodies[1]
    assert "PLAN: 1. add a flag" in bodies[2] and "CODE: def flag()" in bodies[2]
    assert "VERDICT: APPROVE" in outcome.response


async def test_agno_dry_run_shows_the_chain_and_calls_nothing(fake_llm, tmp_path):
    spec = InvokeSpec(kind="agno", text="add a flag", dry_run=True)
    outcome = await invoke(spec, completer=_router(fake_llm), journal=Journal(tmp_path / "m"))
    assert outcome.outcome == "DRY-RUN"
    assert "1. planner" in outcome.response and "3. reviewer" in outcome.response
    assert fake_llm.requests == []
    assert "DRY-RUN" in (tmp_path / "m" / "journal.md").read_text()


# --- codex command line -------------------------------------------------------------------
CODEX_STREAM = """
print(json.dumps({"type": "thread.started"}), flush=True)
print(json.dumps({"type": "item.completed", "item": {"type": "agent_message", "text": "first"}}), flush=True)
print("progress on stderr", file=sys.stderr, flush=True)
print(json.dumps({"type": "item.completed", "item": {"type": "agent_message", "text": "final answer"}}), flush=True)
print(json.dumps({"type": "turn.completed", "usage": {"input_tokens": 40, "output_tokens": 9}}))
"""


def _codex_router(tool):
    env = {"TEKTON_CODEX_BIN": str(tool), "PATH": os.environ["PATH"], "OPENAI_API_KEY": "x"}
    return router_build(env=env, backend_override="auto", retry_options=retry_options_for("codex"))


async def test_codex_streams_and_keeps_stdout_and_stderr(tmp_path):
    tool = fake_tool(tmp_path, "codex", CODEX_STREAM)
    router = _codex_router(tool)
    deltas: list[str] = []
    outcome = await invoke(
        InvokeSpec(kind="codex", text="rename foo"),
        completer=router,
        journal=Journal(tmp_path / "m"),
        on_delta=lambda d: deltas.append("<restart>" if d.restart else d.text),
    )
    assert outcome.outcome == "OK" and outcome.response == "final answer"
    assert deltas == ["first", "<restart>", "final answer"]
    folder = tmp_path / "m" / "latest"
    assert '"agent_message"' in (folder / "stdout.txt").read_text()
    assert (folder / "stderr.txt").read_text() == "progress on stderr\n"
    assert json.loads((folder / "metadata.json").read_text())["tokens_in"] == 40


async def test_codex_that_hangs_is_killed_at_the_timeout_and_journaled_failed(tmp_path):
    tool = fake_tool(tmp_path, "codex", "time.sleep(30)\n")
    router = _codex_router(tool)
    outcome = await invoke(
        InvokeSpec(kind="codex", text="rename foo", codex_timeout=0.5),
        completer=router,
        journal=Journal(tmp_path / "m"),
    )
    assert outcome.outcome == "FAILED" and outcome.exit_code == 1
    assert "no answer within 0.5 s" in outcome.error
    folder = tmp_path / "m" / "latest"
    assert "[killed: no answer within 0.5 s]" in (folder / "stderr.txt").read_text()
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["outcome"] == "FAILED"
    assert meta["attempts"][0]["calls"] == 1  # killed once, not started again


async def test_codex_that_fails_keeps_its_stderr(tmp_path):
    tool = fake_tool(
        tmp_path, "codex", "print('auth expired: log in again', file=sys.stderr)\nsys.exit(3)\n"
    )
    router = _codex_router(tool)
    outcome = await invoke(
        InvokeSpec(kind="codex", text="x"), completer=router, journal=Journal(tmp_path / "m")
    )
    assert outcome.outcome == "FAILED"
    assert "exited with status 3: auth expired" in outcome.error
    assert "auth expired" in (tmp_path / "m" / "latest" / "stderr.txt").read_text()


async def test_codex_absent_is_a_usage_problem_and_writes_nothing(tmp_path):
    router = router_build(
        env={"TEKTON_CODEX_BIN": str(tmp_path / "nope"), "PATH": ""}, backend_override="auto"
    )
    with pytest.raises(UsageProblem, match="needs the `.*nope` command"):
        await invoke(
            InvokeSpec(kind="codex", text="x"), completer=router, journal=Journal(tmp_path / "m")
        )
    assert not (tmp_path / "m").exists()


# --- journal ------------------------------------------------------------------------------
async def test_journal_writes_everything_redacted_with_git_facts(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "trunk"], cwd=repo, check=True)
    (repo / "a.txt").write_text("a\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "i"],
        cwd=repo,
        check=True,
    )
    (repo / "a.txt").write_text("changed\n")
    router = router_build(env={}, backend_override="offline")
    mem = tmp_path / "mem"
    outcome = await invoke(
        InvokeSpec(kind="claude", text=f"why is {KEY} refused?", context=f"ANTHROPIC={KEY}\n"),
        completer=router,
        journal=Journal(mem),
        git_path=repo,
    )
    assert outcome.outcome == "OK" and outcome.is_offline
    folder = mem / "latest"
    assert folder.is_symlink()
    assert {p.name for p in folder.iterdir()} == {
        "prompt.md",
        "context.md",
        "response.md",
        "metadata.json",
    }
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["git_branch"] == "trunk" and meta["git_dirty"] is True
    assert len(meta["git_sha"]) == 40
    assert meta["provider"] == "offline" and meta["model"] == "anthropic/claude-sonnet-4.6"
    assert "[API_KEY#1]" in (folder / "prompt.md").read_text()
    assert KEY not in _files_text(mem)
    assert "sk-ant-api03" not in json.dumps(outcome.redacted())
    section = (mem / "journal.md").read_text()
    assert "· ask claude · OK" in section and "- prompt: why is [API_KEY#1] refused?" in section


async def test_interrupted_invocation_is_journaled_failed(tmp_path):
    class Interrupting:
        def resolve(self, model):
            return None

        async def complete(self, request):
            raise KeyboardInterrupt

    journal = Journal(tmp_path / "m")
    with pytest.raises(KeyboardInterrupt):
        await invoke(
            InvokeSpec(kind="claude", text="hi"), completer=Interrupting(), journal=journal
        )
    [entry] = journal.entries()
    assert entry["outcome"] == "FAILED" and entry["error"] == "interrupted"
    assert "· ask claude · FAILED" in (tmp_path / "m" / "journal.md").read_text()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (InvokeSpec(kind="claude", text="   "), "the prompt is empty"),
        (InvokeSpec(kind="claude", text="x" * 30, max_chars=20), "the limit is 20"),
        (InvokeSpec(kind="prompt", text="x", intent="poetry"), "unknown intent"),
    ],
)
async def test_bad_input_is_a_usage_problem_before_anything_is_written(tmp_path, spec, message):
    with pytest.raises(UsageProblem, match=message):
        await invoke(
            spec,
            completer=router_build(env={}, backend_override="offline"),
            journal=Journal(tmp_path / "m"),
        )
    assert not (tmp_path / "m").exists()


def test_unwritable_memory_directory_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(JournalError, match="is not writable"):
        Journal(blocker / "mem").check_writable()


def test_folders_are_unique_when_two_start_in_one_second(tmp_path):
    journal = Journal(tmp_path)
    journal.check_writable()
    when = datetime.datetime(2026, 12, 1, 12, 0, 3, tzinfo=datetime.UTC)
    names = [journal._folder_new(when).name for _ in range(3)]
    assert names == ["20261201T120003Z", "20261201T120003Z-2", "20261201T120003Z-3"]


async def test_search_recent_context_and_prune(tmp_path):
    router = router_build(env={}, backend_override="offline")
    journal = Journal(tmp_path)
    for text in ("about pelicans", "about herons"):
        await invoke(InvokeSpec(kind="claude", text=text), completer=router, journal=journal)
    assert [e["prompt"] for e in journal.search("pelican")] == ["about pelicans"]
    recent = journal.recent_context(budget=400)
    assert len(recent) <= 400
    assert recent.index("herons") < recent.index("pelicans")  # newest first
    old = tmp_path / "invocations" / "20200101T000000Z"
    old.mkdir()
    (old / "metadata.json").write_text("{}")
    assert journal.prune(older_than=duration_parse("14d")) == ["20200101T000000Z"]
    assert len(journal.entries()) == 2
    with pytest.raises(ValueError):
        duration_parse("fortnight")


async def test_a_chain_that_gets_429_forever_or_garbage_fails_with_each_reason(fake_llm, tmp_path):
    from tests.fakes.llm_server import malformed

    # Garbage is retried like a transient error (four calls), then the chain gives up.
    fake_llm.script(*[status(429)] * 4, *[malformed()] * 4)
    spec = InvokeSpec(
        kind="prompt",
        text="fix it",
        chains={"code": ["anthropic/claude-sonnet-4.6", "openai/gpt-4.1"]},
    )
    outcome = await invoke(spec, completer=_router(fake_llm), journal=Journal(tmp_path / "m"))
    assert outcome.outcome == "FAILED" and outcome.exit_code == 1
    assert outcome.error.startswith("every model of the chain failed; last: openai")
    first, second = outcome.attempts
    assert (first["outcome"], first["calls"]) == ("failed", 4) and "HTTP 429" in first["detail"]
    assert second["outcome"] == "failed"
    assert "· prompt · FAILED" in (tmp_path / "m" / "journal.md").read_text()


async def test_agno_stops_before_a_step_once_the_budget_is_spent(fake_llm, tmp_path):
    fake_llm.script(ok("PLAN", input_tokens=900, output_tokens=200))
    spec = InvokeSpec(kind="agno", text="add a flag", model="openai/gpt-4.1", budget_tokens=1000)
    outcome = await invoke(spec, completer=_router(fake_llm), journal=Journal(tmp_path / "m"))
    assert outcome.outcome == "FAILED"
    assert outcome.error == "token budget of 1000 used up (1100 used); stopped before the coder"
    assert "PLAN" in outcome.response and len(fake_llm.requests) == 1
