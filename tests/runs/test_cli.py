"""`manage.py tekton` through call_command: the real engine with the offline backend.

Transactional: in inline mode the command runs the stages in a worker thread, which has
its own database connection and must see committed rows.
"""

from __future__ import annotations

import importlib
import json
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.cli_render import FollowView, console_for
from runs.models import Run, RunEvent, StageRun
from runs.services import run_cancel, run_create
from swarm.stages import STAGE_NAMES
from tests.cli import tekton
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db(transaction=True)
migration = importlib.import_module("config_profiles.migrations.0002_default_profile")

ALL_FILES = {
    "plan.json",
    "research.json",
    "backlog.json",
    "code.json",
    "diff.patch",
    "review.json",
    "threat.json",
    "integration.json",
    "test_report.json",
    "release_report.json",
    "diamond_summary.json",
}


@pytest.fixture(autouse=True)
def default_profile():
    # Transactional tests flush tables between tests, data migrations included.
    migration.create_default(apps, None)


def test_full_offline_run_exits_0_with_artifacts_in_output(git_repo, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = tekton(
        "run", "--goal", "Add a health endpoint", "--repo", str(git_repo), "--output", str(out_dir)
    )
    assert code == 0, err
    run = Run.objects.get()
    assert run.status == Run.Status.SUCCEEDED
    assert {p.name for p in out_dir.iterdir() if p.name != ".tekton-run"} == ALL_FILES
    # Off a terminal: one plain line per event, ending with the final one.
    lines = [line for line in out.splitlines() if line.startswith(f"run {run.pk} #")]
    assert len(lines) == RunEvent.objects.filter(run=run).count()
    assert lines[-1].startswith(f"run {run.pk} #{run.event_seq} run.finished")
    assert f"run {run.pk} succeeded" in out


def test_stage_range_model_and_consensus_free_reach_the_run(git_repo):
    code, _, err = tekton(
        "run",
        "--goal",
        "g",
        "--repo",
        str(git_repo),
        "--from",
        "plan",
        "--to",
        "plan_update",
        "--model",
        "offline/echo",
        "--consensus-free",
        "research,plan_update",
    )
    assert code == 0, err
    run = Run.objects.get()
    assert run.config["stages"] == ["plan", "research", "plan_update"]
    assert run.config["consensus_free"] == ["research", "plan_update"]
    assert run.config["models"]["plan"]["skeptic"] == "offline/echo"
    assert list(run.stages.values_list("status", flat=True)) == ["succeeded"] * 3


def test_explain_prints_the_plan_and_writes_nothing(git_repo, tmp_path):
    out_dir = tmp_path / "never"
    code, out, err = tekton(
        "run",
        "--goal",
        "g",
        "--repo",
        str(git_repo),
        "--explain",
        "--consensus-free",
        "code",
        "--output",
        str(out_dir),
    )
    assert code == 0, err
    assert not Run.objects.exists() and not out_dir.exists()
    for stage in STAGE_NAMES:
        assert stage in out
    assert "x-ai/grok-2-mini" in out and "-> offline" in out
    # The forecast: per stage and for the run, offline answers costing nothing.
    assert "forecast: " in out and "$0.00 ($0.00 at p90), from estimate" in out
    assert "quorum: 0.67" in out and "threshold: 0.70" in out  # as the page says them
    assert "free (checks decide)" in out and "debate + quorum" in out
    assert "review, threat" in out  # integrate waits for both


def test_explain_says_what_the_profiles_cache_stagger_does(git_repo, monkeypatch):
    from config_profiles.models import Profile

    monkeypatch.setenv("TEKTON_LLM_BACKEND", "auto")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    models = {"default": "anthropic/claude-opus-4.1"}
    Profile.objects.create(name="priced", stage_models=models)
    Profile.objects.create(name="eager", stage_models=models, cache_stagger=False)
    args = ("run", "--goal", "g", "--repo", str(git_repo), "--to", "research", "--explain")
    code, out, err = tekton(*args, "--profile", "priced")
    assert code == 0, err
    assert (
        "opening round staggered for the prompt cache: +1 call of latency per debate stage "
        "(plan, research)" in " ".join(out.split())
    )
    code, out, err = tekton(*args, "--profile", "eager")
    assert code == 0, err
    assert "opening round: all three debaters at once (cache_stagger off)" in out
    assert not Run.objects.exists()


def test_blocked_run_exits_3_then_approve_finishes_it(git_repo):
    code, _, err = tekton("run", "--goal", "g [offline:block=review]", "--repo", str(git_repo))
    assert code == 3
    run = Run.objects.get()
    assert run.status == Run.Status.BLOCKED
    assert f"manage.py tekton approve {run.pk} review" in err
    assert f"manage.py tekton retry {run.pk} review --note" in err
    assert f"manage.py tekton abort {run.pk}" in err

    code, out, err = tekton("approve", str(run.pk), "review")
    assert code == 0, err
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert "stage.approved review" in out and "run.finished" in out


def test_retry_with_note_reaches_the_stage(git_repo):
    tekton("run", "--goal", "g [offline:block=review]", "--repo", str(git_repo))
    run = Run.objects.get()
    code, out, err = tekton("retry", str(run.pk), "review", "--note", "split the change in two")
    run.refresh_from_db()
    review = run.stages.get(stage="review")
    assert review.note == "split the change in two"
    assert review.attempt >= 1
    assert "stage.retried review" in out
    # The offline block marker applies to a first attempt without a note: the retry passes.
    assert (code, run.status) == (0, Run.Status.SUCCEEDED), err


def test_resume_of_a_cancelled_run_finishes_it(git_repo):
    run = run_create(goal="g", repo_path=str(git_repo), stage_to="research", dispatch=False)
    run_cancel(run=run)
    code, out, err = tekton("run", "--resume", str(run.pk))
    assert code == 0, err
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert "run.resumed" in out


def test_abort_and_cancel_and_state_errors(git_repo):
    tekton("run", "--goal", "g [offline:block=review]", "--repo", str(git_repo))
    run = Run.objects.get()
    code, out, _ = tekton("abort", str(run.pk))
    assert code == 0 and "cancelled" in out
    code, _, err = tekton("cancel", str(run.pk))
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    code, _, err = tekton("approve", str(run.pk), "review")
    assert code == 2 and err.startswith("error: ")


def test_cancel_a_queued_run(git_repo):
    run = run_create(goal="g", repo_path=str(git_repo), dispatch=False)
    code, out, _ = tekton("cancel", str(run.pk))
    assert code == 0 and f"run {run.pk} cancelled" in out
    assert Run.objects.get(pk=run.pk).status == Run.Status.CANCELLED


def test_unknown_run_id_is_a_usage_error():
    for args in (
        ("show", "4242"),
        ("approve", "4242", "plan"),
        ("cancel", "4242"),
        ("run", "--resume", "4242"),
        ("follow", "4242"),
        ("follow", "4242", "--deltas"),
    ):
        code, _, err = tekton(*args)
        assert code == 2, args
        assert err.strip() == "error: no run with id 4242"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--from", "coding"], "unknown stage 'coding'"),
        (["--from", "code", "--to", "plan"], "comes before"),
        (["--profile", "nope"], "unknown profile 'nope'"),
        (["--model", "gpt4"], "vendor/model"),
        (["--consensus-free", "deploy"], "deploy"),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_create_nothing(git_repo, args, words):
    code, _, err = tekton("run", "--goal", "g", "--repo", str(git_repo), *args)
    assert code == 2
    assert err.startswith("error: ") and words in err
    assert len(err.strip().splitlines()) == 1
    assert not Run.objects.exists()


def test_missing_goal_and_unknown_flag_exit_2():
    # From Python, a usage error is a CommandError carrying the message and status 2.
    for args, words in (
        (("run",), "--goal"),
        (("run", "--goal", "g", "--frobnicate"), "--frobnicate"),
    ):
        with pytest.raises(CommandError) as exc:
            call_command("tekton", *args, stdout=StringIO(), stderr=StringIO())
        assert exc.value.returncode == 2
        assert str(exc.value).startswith("error: ") and words in str(exc.value)
    assert not Run.objects.exists()


def test_unexpected_error_is_one_redacted_line_and_exit_1(git_repo, monkeypatch):
    secret = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"

    def broken(**kwargs):
        raise RuntimeError(f"database exploded with key {secret}")

    monkeypatch.setattr("runs.services.run_create", broken)
    code, _, err = tekton("run", "--goal", "g", "--repo", str(git_repo))
    assert code == 1
    assert secret not in err
    assert err.strip().splitlines() == [
        "error: database exploded with key [API_KEY#1] (rerun with --debug for the traceback)"
    ]
    code, _, err = tekton("run", "--goal", "g", "--repo", str(git_repo), "--debug")
    assert code == 1 and "Traceback" in err and secret not in err


def test_runs_and_show(git_repo):
    tekton("run", "--goal", "List and show me", "--repo", str(git_repo), "--to", "research")
    run = Run.objects.get()
    code, out, _ = tekton("runs")
    assert code == 0 and "List and show me" in out and "2/2" in out and "succeeded" in out
    newer = run_create(goal="Newest first", repo_path=str(git_repo), dispatch=False)
    code, out, _ = tekton("runs", "--limit", "1")
    assert "Newest first" in out and "List and show me" not in out and "0/9" in out
    code, out, _ = tekton("runs", "--status", "succeeded")
    assert "List and show me" in out and "Newest first" not in out
    code, _, _ = tekton("runs", "--status", "sleeping")
    assert code == 2
    run_cancel(run=newer)
    code, out, _ = tekton("show", str(run.pk), "--json")
    data = json.loads(out)
    assert data["id"] == run.pk and data["status"] == "succeeded"
    assert [s["stage"] for s in data["stages"]] == ["plan", "research"]
    assert all(s["confidence"] is not None and len(s["votes"]) == 3 for s in data["stages"])
    names = {a["name"] for a in data["artifacts"]}
    assert {"plan.json", "research.json", "diamond_summary.json"} <= names
    assert all(a["path"].startswith(run.config["artifact_root"]) for a in data["artifacts"])
    code, out, _ = tekton("show", str(run.pk))
    assert code == 0 and "research.json" in out and "proponent: yes" in out


def test_show_splits_input_into_cached_and_uncached_per_stage_and_run():
    run = RunFactory(stage_from="plan", stage_to="research")
    split = {"input_tokens": 52_000, "cached_input_tokens": 41_200, "cache_write_tokens": 5_300}
    Run.objects.filter(pk=run.pk).update(**split)
    StageRun.objects.filter(run=run, stage="plan").update(**split)
    code, out, _ = tekton("show", str(run.pk), "--json")
    data = json.loads(out)
    assert code == 0
    assert (data["cached_input_tokens"], data["uncached_input_tokens"]) == (41_200, 5_500)
    plan, research = data["stages"]
    assert (plan["cached_input_tokens"], plan["cache_write_tokens"]) == (41_200, 5_300)
    assert plan["uncached_input_tokens"] == 5_500 and research["uncached_input_tokens"] == 0
    code, out, _ = tekton("show", str(run.pk))
    assert "input: 41,200 cached / 5,500 uncached (+ 5,300 cache writes)" in out
    assert out.count("41,200 cached") == 2  # the run's line and the plan stage's row


def test_live_display_on_a_terminal(git_repo, monkeypatch):
    monkeypatch.setattr(
        "runs.management.commands.tekton.console_for", lambda s: console_for(s, force_terminal=True)
    )
    code, out, err = tekton("run", "--goal", "g", "--repo", str(git_repo), "--to", "research")
    assert code == 0, err
    run = Run.objects.get()
    # The Progress display replaces the per-event lines: one row per stage.
    assert f"run {run.pk} #" not in out
    assert "research" in out and "succeeded" in out and "conf " in out


def test_follow_view_tracks_stage_state():
    class E:
        def __init__(self, seq, kind, stage="", payload=None):
            self.seq, self.kind, self.stage, self.payload = seq, kind, stage, payload or {}

    view = FollowView(run_id=7, stages=["plan", "research"], rounds=1)
    assert view.expected_messages("plan") == 7
    view.apply(E(1, "stage.started", "plan", {"attempt": 1}))
    line = view.apply(
        E(2, "stage.progress", "plan", {"round": 0, "role": "skeptic", "model": "m/x"})
    )
    assert line == "run 7 #2 stage.progress plan round 0 skeptic (m/x)"
    assert (view.rows["plan"].status, view.rows["plan"].messages) == ("running", 1)
    view.apply(E(3, "stage.blocked", "plan", {"reason": "quorum 0.4 < 0.67"}))
    assert view.blocked_stage == "plan" and view.final_kind is None
    view.apply(E(4, "run.cancelled", "", {"status": "cancelled", "reason": "aborted"}))
    assert view.final_kind == "run.cancelled" and view.rows["research"].status == "cancelled"
    assert StageRun.Status.BLOCKED == view.rows["plan"].status


def test_paths_the_filesystem_cannot_take_are_usage_errors(git_repo, tmp_path):
    long = str(tmp_path / ("a" * 300))
    for args, fragment in (
        (["--repo", long], "component of 300 bytes"),
        (["--repo", str(git_repo), "--output", long], "component of 300 bytes"),
        (["--repo", str(git_repo), "--record", str(tmp_path)], "is a folder; name a file"),
    ):
        code, out, err = tekton("run", "--goal", "g", *args)
        assert code == 2, (args, err)
        assert fragment in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert not Run.objects.exists()


def test_index_and_search_refuse_a_repository_path_the_filesystem_cannot_take(tmp_path):
    long = str(tmp_path / ("a" * 300))
    for args in (("index", long), ("search", "greet", "--repo", long)):
        code, _, err = tekton(*args)
        assert code == 2, (args, err)
        assert "has a component of 300 bytes; the limit is 255" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_run_with_deltas_prints_each_agents_words_before_its_stored_message(git_repo):
    code, out, err = tekton(
        "run",
        "--goal",
        "Add a health endpoint",
        "--repo",
        str(git_repo),
        "--to",
        "plan",
        "--deltas",
    )
    assert code == 0, err
    run = Run.objects.get()
    lines = out.splitlines()
    streamed = [line for line in lines if line.startswith("plan · ")]
    roles = {line.split(" · ")[1] for line in streamed}
    assert roles == {"proponent", "skeptic", "pragmatist", "mediator"}
    # The readable text of each answer (its position, the mediator's rationale), not JSON.
    assert any(line.startswith("plan · skeptic · opening: [offline] skeptic") for line in streamed)
    assert any(
        line.startswith("plan · mediator · mediator: [offline] reconciled") for line in streamed
    )
    assert not [line for line in streamed if '{"' in line or '"checks"' in line]
    # Every event still has its line, and the stream's text never went into the record.
    events = [line for line in lines if line.startswith(f"run {run.pk} #")]
    assert len(events) == RunEvent.objects.filter(run=run).count()
    assert not RunEvent.objects.filter(run=run, kind="stage.delta").exists()
    first_words = next(i for i, line in enumerate(lines) if line.startswith("plan · mediator"))
    mediator_stored = next(
        i for i, line in enumerate(lines) if "stage.progress plan" in line and "mediator" in line
    )
    assert first_words < mediator_stored, out


def test_follow_shows_a_run_another_thread_runs_and_ends_where_it_blocks(git_repo, monkeypatch):
    # Another thread runs the stages while `follow` watches from the start: every stored
    # event once, in seq order, then the block's line and how to go on, exit 3.
    import threading

    from runs import cli_process

    monkeypatch.setenv("TEKTON_OFFLINE_LATENCY_MS", "5")
    run = run_create(
        goal="g [offline:block=research]",
        repo_path=str(git_repo),
        stage_to="research",
        dispatch=False,
    )
    worker = cli_process.Worker(lambda: cli_process.drive(run.pk))
    runner = threading.Timer(0.3, worker.start)  # follow is already waiting when it starts
    runner.start()
    code, out, err = tekton("follow", str(run.pk))
    runner.join()
    worker.join()
    assert code == 3, err
    run.refresh_from_db()
    assert run.status == Run.Status.BLOCKED
    seqs = [
        int(line.split()[2][1:]) for line in out.splitlines() if line.startswith(f"run {run.pk} #")
    ]
    assert seqs == list(range(1, run.event_seq + 1))
    assert "blocked: " in err and f"manage.py tekton approve {run.pk} research" in err
    # A finished (here: blocked) run: its events again, the same end, at once.
    code, again, _ = tekton("follow", str(run.pk))
    assert code == 3 and again == out


def test_tui_subcommand_starts_the_terminal_ui_and_reports_its_refusal(capsys):
    # tui.main.tui_run behind `manage.py tekton tui`: a bad --url is its one-line refusal.
    code, _, _ = tekton("tui", "7", "--url", "ftp://tekton.example.invalid")
    assert code == 2
    assert capsys.readouterr().err == (
        "tekton tui: error: --url must be an http(s) URL, got 'ftp://tekton.example.invalid'\n"
    )
