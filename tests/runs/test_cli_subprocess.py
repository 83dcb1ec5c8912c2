"""`manage.py tekton` as a real process, on embedded defaults: SQLite in a temporary data
dir, inline execution, the offline backend. Each start costs about a second, so these
tests are few and run the usage-error cases side by side."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings

from tests.runs.test_cli import ALL_FILES  # the files a full run writes
from tests.support.pyvenv import venv_link

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
DROP = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "TEKTON_EXECUTION",
    "TEKTON_ARTIFACT_ROOT",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "OPENROUTER_API_KEY",
    "PORTKEY_API_KEY",
    "AIMLAPI_API_KEY",
    "TEKTON_REPLAY_PATH",
)


class Cli:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.repo = root / "repo"
        self.env = {k: v for k, v in os.environ.items() if k not in DROP}
        self.env.update(
            TEKTON_DATA_DIR=str(self.data),
            TEKTON_REPO_ROOTS=str(root),
            TEKTON_LLM_BACKEND="offline",
            TEKTON_RETRIEVAL="false",
            DJANGO_SETTINGS_MODULE="tekton_site.settings",
        )
        self.env.pop("PYTEST_CURRENT_TEST", None)

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
        return subprocess.run(
            [sys.executable, MANAGE, *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def runs(self) -> list[tuple[int, str]]:
        with sqlite3.connect(self.data / "tekton.sqlite3") as db:
            return db.execute("SELECT id, status FROM runs_run ORDER BY id").fetchall()


def _git(path: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@tekton.invalid", *args],
        cwd=path,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Cli:
    root = tmp_path_factory.mktemp("cli").resolve()
    c = Cli(root)
    c.repo.mkdir()
    (c.repo / "README.md").write_text("# Sample\n")
    (c.repo / "app.py").write_text("def ok():\n    return True\n")
    (c.repo / "test_app.py").write_text("from app import ok\n\n\ndef test_ok():\n    assert ok()\n")
    _git(c.repo, "init", "-q", "-b", "main")
    _git(c.repo, "add", ".")
    _git(c.repo, "commit", "-q", "-m", "init")
    venv_link(c.repo)
    (root / "plain").mkdir()
    done = c("migrate", "-v", "0")
    assert done.returncode == 0, done.stderr
    return c


def test_full_offline_run_exits_0_with_every_artifact_in_output(cli):
    out = cli.root / "out-full"
    before = len(cli.runs())
    done = cli(
        "tekton",
        "run",
        "--goal",
        "Add a health endpoint",
        "--repo",
        str(cli.repo),
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir() if p.name != ".tekton-run"} == ALL_FILES
    runs = cli.runs()
    assert len(runs) == before + 1 and runs[-1][1] == "succeeded"
    assert "run.finished" in done.stdout


def test_explain_writes_nothing(cli):
    before = cli.runs()
    out = cli.root / "out-explain"
    done = cli(
        "tekton", "run", "--goal", "g", "--repo", str(cli.repo), "--explain", "--output", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "release" in done.stdout and "-> offline" in done.stdout
    assert cli.runs() == before
    assert not out.exists()


def test_every_usage_error_exits_2_with_one_line_and_creates_nothing(cli):
    repo = str(cli.repo)
    cases = {
        "unknown stage": (
            ["--goal", "g", "--repo", repo, "--from", "deploy"],
            {},
            "unknown stage 'deploy'",
        ),
        "--to before --from": (
            ["--goal", "g", "--repo", repo, "--from", "code", "--to", "plan"],
            {},
            "before",
        ),
        "empty goal": (["--goal", "   ", "--repo", repo], {}, "goal is empty"),
        "goal too long": (["--goal", "x" * 8001, "--repo", repo], {}, "8,000"),
        "outside roots": (
            ["--goal", "g", "--repo", str(Path(settings.BASE_DIR))],
            {},
            "outside the allowed roots",
        ),
        "not git": (["--goal", "g", "--repo", str(cli.root / "plain")], {}, "not a git repository"),
        "unknown profile": (
            ["--goal", "g", "--repo", repo, "--profile", "nope"],
            {},
            "unknown profile 'nope'",
        ),
        "model with no route": (
            ["--goal", "g", "--repo", repo, "--model", "gpt4"],
            {},
            "vendor/model",
        ),
        "key not set": (
            ["--goal", "g", "--repo", repo],
            {"TEKTON_LLM_BACKEND": "auto", "OPENAI_API_KEY": "sk-proj-testkeyabcdefghijklmnop"},
            "ANTHROPIC_API_KEY",
        ),
        "unknown flag": (["--goal", "g", "--repo", repo, "--frobnicate"], {}, "--frobnicate"),
    }
    before = cli.runs()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = {
            name: pool.submit(cli, "tekton", "run", *args, env=env)
            for name, (args, env, _) in cases.items()
        }
    for name, future in results.items():
        done = future.result()
        words = cases[name][2]
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (name, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, done.stderr)
        assert words in lines[0], (name, lines)
        assert "Traceback" not in done.stderr and "sk-proj-testkey" not in done.stderr, name
    assert cli.runs() == before


def test_debug_adds_the_traceback(cli):
    done = cli(
        "tekton", "run", "--goal", "g", "--repo", str(cli.repo), "--from", "deploy", "--debug"
    )
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: unknown stage 'deploy'")


def test_blocked_run_exits_3_and_approve_finishes_it(cli):
    done = cli("tekton", "run", "--goal", "g [offline:block=review]", "--repo", str(cli.repo))
    assert done.returncode == 3, done.stderr
    run_id, status = cli.runs()[-1]
    assert status == "blocked"
    assert f"manage.py tekton approve {run_id} review" in done.stderr
    done = cli("tekton", "approve", str(run_id), "review")
    assert done.returncode == 0, done.stderr
    assert cli.runs()[-1] == (run_id, "succeeded")
    # --detach hands the call to a detached child, which reports its result first.
    done = cli("tekton", "approve", str(run_id), "review", "--detach")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: ") and "blocked" in done.stderr


def test_detach_returns_at_once_and_the_run_finishes_in_the_background(cli):
    env = {"TEKTON_OFFLINE_LATENCY_MS": "20"}  # long enough that the run outlives the command
    done = cli("tekton", "run", "--goal", "g", "--repo", str(cli.repo), "--detach", env=env)
    assert done.returncode == 0, done.stderr
    run_id = int(done.stdout.strip())
    assert dict(cli.runs())[run_id] in ("queued", "running")
    deadline = time.monotonic() + 90
    while dict(cli.runs())[run_id] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert dict(cli.runs())[run_id] == "succeeded"


def test_detached_retry_reports_ok_and_the_child_finishes_the_run(cli):
    done = cli("tekton", "run", "--goal", "g [offline:block=review]", "--repo", str(cli.repo))
    assert done.returncode == 3, done.stderr
    run_id, _ = cli.runs()[-1]
    done = cli("tekton", "retry", str(run_id), "review", "--note", "n", "--detach")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(run_id)
    deadline = time.monotonic() + 90
    while dict(cli.runs())[run_id] in ("queued", "running", "blocked"):
        assert time.monotonic() < deadline, "the detached child did not finish the run"
        time.sleep(0.3)
    assert dict(cli.runs())[run_id] == "succeeded"  # a retry with a note gets past the block


def _run_against_a_refusing_provider(cli, *flags: str):
    """`tekton run` to plan against a fake Anthropic server that answers every call 401:
    (the finished process, the requests the server got)."""
    from tests.fakes.llm_server import FakeLlmServer, status

    server = FakeLlmServer().start()
    try:
        for _ in range(12):
            server.script(status(401, message="invalid x-api-key"))
        env = {
            "TEKTON_LLM_BACKEND": "auto",
            "ANTHROPIC_API_KEY": "sk-ant-api03-not-a-real-key-0123456789abcdef",
            "ANTHROPIC_BASE_URL": server.anthropic_base_url,
        }
        done = cli(
            "tekton", "run", "--goal", "Fail fast", "--repo", str(cli.repo), "--to", "plan",
            "--model", "anthropic/claude-opus-4.1", *flags, env=env,
        )  # fmt: skip
    finally:
        server.stop()
    return done, server.requests


def test_a_failing_provider_is_one_line_per_failure_and_the_traceback_goes_to_the_log(cli):
    done, requests = _run_against_a_refusing_provider(cli)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    failures = [line for line in done.stderr.splitlines() if " / plan attempt " in line]
    # A 401 is not worth another attempt: one line for it, then the run's own line.
    assert len(failures) == 1
    assert "failed after 1 attempt: ProviderAuthError" in done.stderr.splitlines()[-1]
    sent = [repr(r.body) for r in requests]  # the opening round's calls, each once
    assert len(set(sent)) == len(sent)
    assert "ProviderAuthError" in failures[0] and "HTTP 401" in failures[0]
    assert "sk-ant-api03" not in done.stderr
    log = (cli.data / "logs" / "cli.log").read_text()
    assert "Traceback" in log and "sk-ant-api03" not in log


def test_follow_from_another_process_reads_the_events_by_seq_until_the_block(cli):
    # Embedded mode: the detached child runs the stages and its in-memory layer is out of
    # this process's reach, so `follow` reads the new events by seq while they are written.
    env = {"TEKTON_OFFLINE_LATENCY_MS": "100"}
    goal = "g [offline:block=research]"
    done = cli("tekton", "run", "--goal", goal, "--repo", str(cli.repo), "--to", "research",
               "--detach", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id = int(done.stdout.strip())
    assert dict(cli.runs())[run_id] in ("queued", "running")
    done = cli("tekton", "follow", str(run_id), "--deltas")
    assert done.returncode == 3, done.stderr
    assert dict(cli.runs())[run_id] == "blocked"
    with sqlite3.connect(cli.data / "tekton.sqlite3") as db:
        (last,) = db.execute("SELECT event_seq FROM runs_run WHERE id = ?", (run_id,)).fetchone()
    lines = [line for line in done.stdout.splitlines() if line.startswith(f"run {run_id} #")]
    assert [int(line.split()[2][1:]) for line in lines] == list(range(1, last + 1))
    assert not [line for line in done.stdout.splitlines() if " · " in line]  # no deltas here
    note, said = done.stderr.splitlines()[:2]
    assert note.startswith("note: embedded mode: the agents' streamed text reaches only")
    assert said.startswith(f"following run {run_id} (") and "every 0.2 s (embedded mode)" in said
    assert f"manage.py tekton approve {run_id} research" in done.stderr
    assert "Traceback" not in done.stderr


def test_with_debug_a_failing_providers_traceback_reaches_the_terminal(cli):
    done, _ = _run_against_a_refusing_provider(cli, "--debug")
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert "ProviderAuthError" in done.stderr and "sk-ant-api03" not in done.stderr
