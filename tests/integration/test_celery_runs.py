"""Runs executed by real Celery worker processes over PostgreSQL and Redis.

Everything under test runs in subprocesses (`manage.py tekton ...`, `celery worker`);
the tests only read the database with psycopg and the artifact files from disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from swarm.stages import PATCH_FILE, STAGE_NAMES, STAGES, SUMMARY_FILE
from tests.integration.harness import (
    MANAGE_PY,
    PROJECT_DIR,
    Services,
    manage,
    sha256_file,
    wait_for,
)

pytestmark = pytest.mark.integration

FINISHED = ("succeeded", "failed", "cancelled")
EXPECTED_ARTIFACT_NAMES = sorted(
    [STAGES[s].artifact_file for s in STAGE_NAMES] + [PATCH_FILE, SUMMARY_FILE]
)


def _goal(text: str) -> str:
    # A unique token finds the run in the database whatever the CLI prints.
    return f"{text} (it-{uuid.uuid4().hex[:8]})"


def _start_run(services: Services, goal: str, repo: Path, *extra: str) -> int:
    proc = manage(
        ["tekton", "run", "--goal", goal, "--repo", str(repo), "--detach", *extra],
        env=services.env,
        timeout=60,
    )
    assert proc.returncode == 0, f"run --detach exited {proc.returncode}:\n{proc.stderr}"
    rows = services.query("SELECT id FROM runs_run WHERE goal = %s", (goal,))
    assert len(rows) == 1, f"expected one run with goal {goal!r}, found {rows}"
    return rows[0]["id"]


def _run(services: Services, run_id: int) -> dict:
    return services.query("SELECT * FROM runs_run WHERE id = %s", (run_id,))[0]


def _stages(services: Services, run_id: int) -> dict[str, dict]:
    rows = services.query(
        "SELECT * FROM runs_stagerun WHERE run_id = %s ORDER BY position", (run_id,)
    )
    return {row["stage"]: row for row in rows}


def _events(services: Services, run_id: int) -> list[dict]:
    return services.query(
        "SELECT seq, kind, stage, payload FROM runs_runevent WHERE run_id = %s ORDER BY seq, id",
        (run_id,),
    )


def _artifacts(services: Services, run_id: int) -> list[dict]:
    return services.query("SELECT * FROM runs_artifact WHERE run_id = %s ORDER BY id", (run_id,))


def _wait_status(
    services: Services, run_id: int, statuses: tuple[str, ...], timeout: float
) -> dict:
    try:
        return wait_for(
            lambda: (run := _run(services, run_id))["status"] in statuses and run,
            timeout=timeout,
            interval=0.2,
            what=f"run {run_id} to reach {'/'.join(statuses)}",
        )
    except TimeoutError as exc:
        stages = {
            name: (s["status"], s["attempt"]) for name, s in _stages(services, run_id).items()
        }
        raise AssertionError(
            f"{exc}; run is {_run(services, run_id)['status']}, stages {stages}"
        ) from None


def _assert_events_gapless(events: list[dict]) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"event seq has gaps or duplicates: {seqs}"


def _assert_artifacts_once_and_intact(services: Services, run_id: int) -> list[dict]:
    """Each (stage, kind) has one artifact row, one artifact.created event, and a file on
    disk whose sha256 and size match the row."""
    run = _run(services, run_id)
    root = Path(run["config"]["artifact_root"])
    artifacts = _artifacts(services, run_id)
    per_key = Counter((a["stage"], a["kind"]) for a in artifacts)
    assert all(n == 1 for n in per_key.values()), f"artifact written twice: {per_key}"
    created = Counter(
        (e["stage"], e["payload"].get("kind"))
        for e in _events(services, run_id)
        if e["kind"] == "artifact.created"
    )
    assert created == per_key, f"artifact.created events {created} != artifact rows {per_key}"
    for art in artifacts:
        path = root / art["path"]
        assert path.is_file(), f"artifact file missing: {path}"
        assert sha256_file(path) == art["sha256"], f"sha256 mismatch for {path}"
        assert path.stat().st_size == art["size"], f"size mismatch for {path}"
    return artifacts


def test_full_run_through_a_real_worker_succeeds_with_all_artifacts(
    services, git_repo, start_worker
):
    start_worker()
    run_id = _start_run(
        services, _goal("Add a subtract function to app.core with a test"), git_repo
    )

    run = _wait_status(services, run_id, FINISHED, timeout=120)

    assert run["status"] == "succeeded", run["reason"]
    stages = _stages(services, run_id)
    assert list(stages) == list(STAGE_NAMES)
    assert {name: s["status"] for name, s in stages.items()} == dict.fromkeys(
        STAGE_NAMES, "succeeded"
    )
    assert all(s["attempt"] == 1 for s in stages.values())
    artifacts = _assert_artifacts_once_and_intact(services, run_id)
    assert sorted(a["name"] for a in artifacts) == EXPECTED_ARTIFACT_NAMES
    events = _events(services, run_id)
    _assert_events_gapless(events)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run.started"
    assert kinds[-1] == "run.finished"
    assert kinds.count("run.finished") == 1
    assert Counter(e["stage"] for e in events if e["kind"] == "stage.finished") == Counter(
        STAGE_NAMES
    )
    llm_stages = {
        r["stage"]
        for r in services.query(
            "SELECT DISTINCT stage FROM runs_llmcall WHERE run_id = %s", (run_id,)
        )
    }
    assert llm_stages == set(STAGE_NAMES)


def test_run_without_detach_follows_the_worker_to_the_end(
    services, git_repo, start_worker, tmp_path
):
    start_worker()
    goal = _goal("Document the add function in README")
    out = tmp_path / "out"

    proc = manage(
        ["tekton", "run", "--goal", goal, "--repo", str(git_repo), "--output", str(out)],
        env=services.env,
        timeout=150,
    )

    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    (run,) = services.query("SELECT id, status FROM runs_run WHERE goal = %s", (goal,))
    assert run["status"] == "succeeded"
    # It followed to the end: the run was already finished when the command returned.
    assert _events(services, run["id"])[-1]["kind"] == "run.finished"
    # The worker wrote no folder on this machine: the CLI fetched every artifact into --output.
    assert {"plan.json", "release_report.json", "diamond_summary.json"} <= {
        p.name for p in out.iterdir()
    }
    assert str(out) in proc.stdout


def test_killed_worker_stage_is_rerun_by_a_new_worker_and_nothing_is_written_twice(
    services, git_repo, start_worker
):
    slow = {"TEKTON_OFFLINE_LATENCY_MS": "300"}
    target = "plan_update"
    first = start_worker(extra_env=slow)
    run_id = _start_run(services, _goal("Add input validation to greet"), git_repo)

    wait_for(
        lambda: _stages(services, run_id)[target]["status"] == "running",
        timeout=60,
        interval=0.05,
        what=f"{target} to be running",
    )
    # Let it get into its LLM calls, so the kill really lands mid-stage.
    time.sleep(0.4)
    assert _stages(services, run_id)[target]["status"] == "running"
    first.kill9()
    killed_at = time.monotonic()
    assert _stages(services, run_id)[target]["attempt"] == 1

    # The kill needed the slow calls; the rerun only has to be seen running (its calls
    # still take a moment each), then goes through the remaining stages quicker.
    start_worker(extra_env={"TEKTON_OFFLINE_LATENCY_MS": "100"})
    wait_for(
        lambda: (
            (s := _stages(services, run_id)[target])["status"] == "running" and s["attempt"] == 2
        ),
        timeout=60 - (time.monotonic() - killed_at),
        interval=0.05,
        what=f"{target} to run again with attempt 2 within 60 s of the kill",
    )

    run = _wait_status(services, run_id, FINISHED, timeout=120)
    assert run["status"] == "succeeded", run["reason"]
    stages = _stages(services, run_id)
    assert all(s["status"] == "succeeded" for s in stages.values())
    assert stages[target]["attempt"] == 2
    events = _events(services, run_id)
    _assert_events_gapless(events)
    started = [
        e["payload"].get("attempt")
        for e in events
        if e["kind"] == "stage.started" and e["stage"] == target
    ]
    assert started == [1, 2]
    artifacts = _assert_artifacts_once_and_intact(services, run_id)
    assert sorted(a["name"] for a in artifacts) == EXPECTED_ARTIFACT_NAMES


def test_blocked_review_waits_and_approve_lets_the_worker_finish(services, git_repo, start_worker):
    start_worker()
    run_id = _start_run(services, _goal("Refactor greet [offline:block=review]"), git_repo)

    run = _wait_status(services, run_id, ("blocked", *FINISHED), timeout=90)
    assert run["status"] == "blocked", run["reason"]
    stages = _stages(services, run_id)
    assert stages["review"]["status"] == "blocked"
    assert stages["review"]["reason"]
    assert all(
        stages[s]["status"] == "succeeded" for s in ("plan", "research", "plan_update", "code")
    )
    # Nothing after review starts while it is blocked.
    assert all(stages[s]["status"] == "queued" for s in ("integrate", "test_debug", "release"))
    assert not [a for a in _artifacts(services, run_id) if a["stage"] == "review"]
    shown = manage(["tekton", "show", str(run_id), "--json"], env=services.env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "blocked" in json.dumps(json.loads(shown.stdout))

    approved = manage(["tekton", "approve", str(run_id), "review"], env=services.env, timeout=60)
    assert approved.returncode == 0, f"approve exited {approved.returncode}: {approved.stderr}"

    run = _wait_status(services, run_id, FINISHED, timeout=90)
    assert run["status"] == "succeeded", run["reason"]
    stages = _stages(services, run_id)
    assert stages["review"]["status"] == "succeeded"
    assert all(s["status"] in ("succeeded", "skipped") for s in stages.values())
    events = _events(services, run_id)
    _assert_events_gapless(events)
    kinds = [e["kind"] for e in events]
    assert "stage.blocked" in kinds and "stage.approved" in kinds
    assert kinds.index("stage.blocked") < kinds.index("stage.approved")
    assert kinds[-1] == "run.finished"
    artifacts = _assert_artifacts_once_and_intact(services, run_id)
    assert sorted(a["name"] for a in artifacts) == EXPECTED_ARTIFACT_NAMES


def test_run_with_deltas_prints_the_workers_streamed_words_over_redis(
    services, git_repo, start_worker
):
    start_worker()
    goal = _goal("Explain the add function")

    proc = manage(
        ["tekton", "run", "--goal", goal, "--repo", str(git_repo), "--to", "plan", "--deltas"],
        env=services.env,
        timeout=150,
    )

    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    # The worker process streamed; this process got the text through Redis's layer.
    streamed = [line for line in proc.stdout.splitlines() if line.startswith("plan · ")]
    # It listened before the stages were dispatched: the first words are there too.
    roles = {line.split(" · ")[1] for line in streamed}
    assert roles == {"proponent", "skeptic", "pragmatist", "mediator"}, streamed
    mediator = "plan · mediator · mediator: [offline] reconciled"  # its rationale, as text
    assert any(line.startswith(mediator) for line in streamed), streamed
    (run,) = services.query("SELECT id FROM runs_run WHERE goal = %s", (goal,))
    assert "stage.delta" not in {e["kind"] for e in _events(services, run["id"])}


def test_follow_gets_a_workers_run_events_and_deltas_from_another_process(
    services, git_repo, start_worker
):
    # The run waits in the queue until `follow` (its own process) has joined the stream;
    # only then does a worker start, so every word it streams comes after the join.
    goal = _goal("Explain the add function")
    run_id = _start_run(services, goal, git_repo, "--to", "plan")
    follow = subprocess.Popen(
        [sys.executable, str(MANAGE_PY), "tekton", "follow", str(run_id), "--deltas"],
        cwd=PROJECT_DIR,
        env=dict(services.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = follow.stderr.readline()  # said once it has joined the stream
        assert said.startswith(f"following run {run_id} (queued), on the event stream"), said
        start_worker(extra_env={"TEKTON_OFFLINE_LATENCY_MS": "200"})
        out, err = follow.communicate(timeout=150)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()

    assert follow.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    lines = out.splitlines()
    # Every stored event once, in seq order, then the outcome.
    seqs = [int(line.split()[2][1:]) for line in lines if line.startswith(f"run {run_id} #")]
    assert seqs == [e["seq"] for e in _events(services, run_id)]
    assert lines[-1].startswith(f"run {run_id} succeeded")
    # The worker's streamed words reached this process over Redis, every agent's.
    streamed = [line for line in lines if line.startswith("plan · ")]
    roles = {line.split(" · ")[1] for line in streamed}
    assert roles == {"proponent", "skeptic", "pragmatist", "mediator"}, streamed
