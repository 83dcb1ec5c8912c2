from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from django.db.models import Sum

from runs.artifacts_store import artifact_path
from runs.dispatch import run_inline
from runs.execution import stage_execute
from runs.lifecycle import stage_artifacts_write
from runs.models import Artifact, LlmCall, Run, RunEvent, StageRun
from swarm.providers.base import (
    NoRouteError,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTransientError,
)
from tests.factories import RunFactory, frozen_config

pytestmark = pytest.mark.django_db


def make_run(repo, stage_from="plan", stage_to="release", **config_kw):
    from swarm.stages import stage_range

    stages = stage_range(stage_from, stage_to)
    return RunFactory(
        repo_path=str(repo),
        stage_from=stage_from,
        stage_to=stage_to,
        config=frozen_config(stages, **config_kw),
    )


def stage_of(run, name) -> StageRun:
    return StageRun.objects.get(run=run, stage=name)


def kinds(run) -> list[str]:
    return list(RunEvent.objects.filter(run=run).order_by("seq").values_list("kind", flat=True))


def test_claim_is_idempotent_second_delivery_is_noop(git_repo, fake_engine):
    run = make_run(git_repo, "plan", "research")
    plan = stage_of(run, "plan")
    nxt = stage_execute(stage_run_id=plan.pk, worker="w1")
    assert nxt == [stage_of(run, "research").pk]
    assert stage_execute(stage_run_id=plan.pk, worker="w2") == []
    assert fake_engine.stages_called() == ["plan"]
    plan.refresh_from_db()
    assert (plan.status, plan.attempt, plan.worker) == ("succeeded", 1, "w1")


def test_running_stage_is_not_claimed_again(git_repo, fake_engine):
    run = make_run(git_repo, "plan", "plan")
    StageRun.objects.filter(run=run).update(status=StageRun.Status.RUNNING, attempt=1)
    assert stage_execute(stage_run_id=stage_of(run, "plan").pk) == []
    assert fake_engine.calls == []


def test_integrate_waits_for_review_and_threat(git_repo, fake_engine):
    run = make_run(git_repo, "review", "integrate")
    review, threat, integrate = (stage_of(run, s) for s in ("review", "threat", "integrate"))
    assert stage_execute(stage_run_id=review.pk) == []  # threat not done yet
    assert stage_execute(stage_run_id=integrate.pk) == []  # not ready: no-op
    assert fake_engine.stages_called() == ["review"]
    integrate.refresh_from_db()
    assert (integrate.status, integrate.attempt) == ("queued", 0)
    assert stage_execute(stage_run_id=threat.pk) == [integrate.pk]


def test_success_records_stage_events_tokens_and_prior_artifacts(git_repo, fake_engine):
    run = make_run(git_repo, "plan", "research")
    run_inline(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded"
    plan = stage_of(run, "plan")
    assert plan.confidence == pytest.approx(0.81)
    assert plan.approval == pytest.approx(0.8)
    assert [v["role"] for v in plan.votes] == ["proponent", "skeptic"]
    research_input = fake_engine.calls[1][0]
    assert research_input.prior_artifacts["plan"]["summary"].startswith("plan for")
    assert research_input.repo.path.endswith("sample")
    assert kinds(run) == [
        "run.started",
        "stage.started",
        "stage.progress",
        "artifact.created",
        "stage.finished",
        "stage.started",
        "stage.progress",
        "artifact.created",
        "stage.finished",
        "artifact.created",
        "run.finished",
    ]
    progress = RunEvent.objects.filter(run=run, kind="stage.progress").first()
    assert "ops@example.com" not in json.dumps(progress.payload)
    calls = LlmCall.objects.filter(run=run)
    assert calls.count() == 2
    assert run.input_tokens == 200 and run.output_tokens == 40
    assert float(run.cost_usd) == pytest.approx(0.003)


def test_artifacts_have_right_sha256_and_are_never_written_twice(git_repo, fake_engine):
    run = make_run(git_repo, "code", "code")
    run_inline(run.pk)
    arts = {a.name: a for a in Artifact.objects.filter(run=run)}
    assert set(arts) == {"code.json", "diff.patch", "diamond_summary.json"}
    for art in arts.values():
        data = artifact_path(art).read_bytes()
        assert hashlib.sha256(data).hexdigest() == art.sha256
        assert len(data) == art.size
    patch_file = artifact_path(arts["diff.patch"])
    before = patch_file.stat().st_mtime_ns
    names = stage_artifacts_write(run=run, stage="code", artifact={"other": 1}, patch="different")
    assert names == ["code.json", "diff.patch"]
    assert Artifact.objects.filter(run=run).count() == 3
    assert patch_file.stat().st_mtime_ns == before
    assert json.loads(artifact_path(arts["code.json"]).read_text())["summary"].startswith(
        "code for"
    )


def test_output_dir_gets_copies_and_summary(git_repo, fake_engine, tmp_path):
    run = make_run(git_repo, "plan", "research")
    out = tmp_path / "out"
    Run.objects.filter(pk=run.pk).update(output_dir=str(out))
    run_inline(run.pk)
    assert sorted(p.name for p in out.iterdir()) == [
        ".tekton-run",  # the folder is this run's: no other run writes into it
        "diamond_summary.json",
        "plan.json",
        "research.json",
    ]
    run.refresh_from_db()
    assert (out / ".tekton-run").read_text().strip() == str(run.uid)
    summary = json.loads((out / "diamond_summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["plan", "research"]
    assert all(s["status"] == "succeeded" for s in summary["stages"])
    assert summary["stages"][0]["artifacts"] == ["plan.json"]
    assert summary["totals"]["input_tokens"] == 200
    row = Artifact.objects.get(run=run, kind="summary")
    assert (out / "diamond_summary.json").read_bytes() == artifact_path(row).read_bytes()


def test_provider_error_twice_then_success(git_repo, fake_engine):
    fake_engine.behaviour = {
        ("plan", 1): ProviderTransientError("HTTP 503"),
        ("plan", 2): ProviderTransientError("HTTP 529 overloaded"),
    }
    run = make_run(git_repo, "plan", "plan")
    run_inline(run.pk)
    run.refresh_from_db()
    plan = stage_of(run, "plan")
    assert run.status == "succeeded"
    assert plan.attempt == 3
    assert [inp.attempt for inp, _ in fake_engine.calls] == [1, 2, 3]
    retried = RunEvent.objects.filter(run=run, kind="stage.retried").order_by("seq")
    assert [e.payload["attempt"] for e in retried] == [1, 2]
    assert set(LlmCall.objects.filter(run=run).values_list("attempt", flat=True)) == {1, 2, 3}


def test_three_failures_fail_the_run_with_a_one_line_reason(git_repo, fake_engine):
    secret = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"
    fake_engine.behaviour = {
        "plan": ProviderError(f"upstream said no for key {secret}\nTraceback: junk")
    }
    run = make_run(git_repo, "plan", "research")
    run_inline(run.pk)
    run.refresh_from_db()
    plan = stage_of(run, "plan")
    assert (run.status, plan.status, plan.attempt) == ("failed", "failed", 3)
    assert run.reason.startswith(
        "stage plan failed after 3 attempts: ProviderError: upstream said no"
    )
    assert "\n" not in run.reason and secret not in run.reason and "Traceback" not in run.reason
    assert stage_of(run, "research").status == "queued"
    assert kinds(run)[-1] == "run.failed"
    assert len(fake_engine.calls) == 3


@pytest.mark.parametrize(
    "error",
    [
        ProviderAuthError("anthropic: HTTP 401: invalid x-api-key", status=401),
        ProviderBadRequest("openai: HTTP 422: unknown field", status=422),
        NoRouteError("model openai/gpt-4o needs env var OPENAI_API_KEY (not set)"),
    ],
    ids=["401", "422", "no-route"],
)
def test_a_request_error_fails_the_stage_at_once_with_the_reason(git_repo, fake_engine, error):
    fake_engine.behaviour = {"plan": error}
    run = make_run(git_repo, "plan", "research")
    run_inline(run.pk)
    run.refresh_from_db()
    assert (run.status, stage_of(run, "plan").attempt) == ("failed", 1)
    assert run.reason == f"stage plan failed after 1 attempt: {type(error).__name__}: {error}"
    assert len(fake_engine.calls) == 1
    assert "stage.retried" not in kinds(run)


def test_budget_left_is_passed_and_spent_budget_blocks_before_the_engine(git_repo, fake_engine):
    run = make_run(git_repo, "plan", "research", budget_tokens=1000)
    Run.objects.filter(pk=run.pk).update(input_tokens=300, output_tokens=100)
    stage_execute(stage_run_id=stage_of(run, "plan").pk)
    cfg = fake_engine.calls[0][1]
    assert cfg.budget_tokens == 600 and cfg.budget_cost_usd is None
    Run.objects.filter(pk=run.pk).update(input_tokens=1000)
    stage_execute(stage_run_id=stage_of(run, "research").pk)
    assert len(fake_engine.calls) == 1
    run.refresh_from_db()
    assert run.status == "blocked" and "budget reached: 1,120 of 1,000 tokens" in run.reason


def test_consensus_free_and_models_come_from_the_frozen_config(git_repo, fake_engine):
    run = make_run(git_repo, "code", "code", consensus_free=["code"], rounds=1)
    stage_execute(stage_run_id=stage_of(run, "code").pk)
    cfg = fake_engine.calls[0][1]
    assert cfg.consensus_free is True and cfg.rounds == 1
    assert cfg.models["mediator"] == "anthropic/claude-opus-4.1"


def test_blocked_stage_blocks_the_run_and_keeps_a_draft(git_repo, fake_engine):
    fake_engine.behaviour = {"code": "block"}
    run = make_run(git_repo, "code", "review")
    run_inline(run.pk)
    run.refresh_from_db()
    code = stage_of(run, "code")
    assert (run.status, code.status) == ("blocked", "blocked")
    assert "below the quorum" in run.reason and "below the quorum" in code.reason
    assert code.draft["patch"].startswith("diff --git")
    assert not Artifact.objects.filter(run=run).exists()
    assert kinds(run)[-1] == "stage.blocked"
    assert stage_of(run, "review").status == "queued"


@pytest.mark.django_db(transaction=True)
def test_cancelled_run_cancels_the_running_stage(git_repo, fake_engine, settings):
    import threading

    from django.db import connection

    settings.TEKTON_HEARTBEAT_SECONDS = 0.05
    run = make_run(git_repo, "plan", "research")

    def cancel_soon():
        Run.objects.filter(pk=run.pk).update(status=Run.Status.CANCELLED)
        connection.close()

    fake_engine.sleep = 0.5
    timer = threading.Timer(0.1, cancel_soon)
    timer.start()
    assert stage_execute(stage_run_id=stage_of(run, "plan").pk) == []
    timer.join()
    plan = stage_of(run, "plan")
    assert plan.status == "cancelled"
    assert not Artifact.objects.filter(run=run).exists()


def test_lost_lease_leaves_the_stage_to_its_new_owner(git_repo, fake_engine, settings, monkeypatch):
    from runs import execution

    run = make_run(git_repo, "plan", "plan")
    real_record = execution._record_success

    def steal_then_record(stage_run_id, token, outcome, recorder):
        StageRun.objects.filter(pk=stage_run_id).update(claim="someone-else")
        return real_record(stage_run_id, token, outcome, recorder)

    monkeypatch.setattr(execution, "_record_success", steal_then_record)
    assert stage_execute(stage_run_id=stage_of(run, "plan").pk) == []
    assert stage_of(run, "plan").status == "running"
    assert not Artifact.objects.filter(run=run).exists()


def test_whole_nine_stage_offline_run_through_the_real_engine(git_repo):
    run = make_run(git_repo, rounds=1)
    run_inline(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.reason
    stages = list(StageRun.objects.filter(run=run))
    assert [s.status for s in stages] == ["succeeded"] * 9
    arts = Artifact.objects.filter(run=run)
    assert arts.filter(kind="json").count() == 9
    assert arts.filter(kind="patch", name="diff.patch").count() == 1
    assert arts.filter(kind="summary", name="diamond_summary.json").count() == 1
    for art in arts:
        assert hashlib.sha256(artifact_path(art).read_bytes()).hexdigest() == art.sha256
    rounds = run.config["rounds"]
    calls = LlmCall.objects.filter(run=run)
    # Per stage: three debaters in the opening round and each debate round, then the mediator.
    assert calls.count() == 9 * (3 * (rounds + 1) + 1)
    totals = calls.aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"))
    assert (run.input_tokens, run.output_tokens) == (totals["i"], totals["o"])
    assert run.input_tokens > 0
    assert sum(s.input_tokens for s in stages) == run.input_tokens
    summary = json.loads(artifact_path(arts.get(kind="summary")).read_text())
    assert [s["status"] for s in summary["stages"]] == ["succeeded"] * 9
    seqs = list(RunEvent.objects.filter(run=run).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert kinds(run)[-1] == "run.finished"
    review = json.loads(artifact_path(arts.get(stage="review", kind="json")).read_text())
    assert review["status"] in ("ok", "revise", "block")
    assert Path(artifact_path(arts.get(kind="patch"))).read_text().startswith(("diff --git", "---"))


@pytest.mark.django_db(transaction=True)  # events publish on commit, in order with deltas
def test_a_stage_streams_its_agents_words_over_the_layer_and_stores_none_of_them(git_repo):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from runs.events import deltas_group, deltas_unpack, deltas_watch, run_group
    from swarm.readable import answer_readable

    run = make_run(git_repo, "plan", "plan", rounds=0)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    # One channel in both groups, as a web process's hub reads them: in the order sent.
    async_to_sync(layer.group_add)(run_group(run.pk), channel)
    async_to_sync(layer.group_add)(deltas_group(), channel)
    deltas_watch([run.pk])  # as the hub does for a subscriber who asked for deltas
    run_inline(run.pk)
    messages = []
    while layer.channels.get(channel) and not layer.channels[channel].empty():
        message = async_to_sync(layer.receive)(channel)
        # One message carries the coalesced text of every call that streamed meanwhile.
        if message["kind"] == "stage.delta":
            messages += deltas_unpack(message)[run.pk]
        else:
            messages.append(message)

    texts: dict[str, str] = {}
    stored = list(RunEvent.objects.filter(run=run).order_by("seq"))
    hinted = 0  # a hint says "events up to this seq": a batch's last event
    progress = 0
    for m in messages:
        if m["kind"] == "stage.delta":
            p = m["payload"]
            assert (m["stage"], p["attempt"]) == ("plan", 1) and "seq" not in m
            texts[p["call_id"]] = texts.get(p["call_id"], "")[: p["offset"]] + p["text"]
            continue
        assert m["seq"] > hinted
        for event in stored[hinted : m["seq"]]:
            if event.kind != "stage.progress":
                continue
            # The stored message's hint comes after all of its call's text.
            role = event.payload["role"]
            call = next(c for c, t in texts.items() if role in roles_of(messages, c))
            # What streamed is the readable part the stored card shows, not the JSON.
            assert texts[call] == answer_readable(event.payload["answer"]) != ""
            progress += 1
        hinted = m["seq"]
    assert progress == 4
    assert len(texts) == 4  # three debaters and the mediator
    assert "stage.delta" not in kinds(run)
    assert hinted == len(stored)  # the last event was hinted


@pytest.mark.django_db(transaction=True)
def test_a_stage_nobody_follows_publishes_no_streamed_text_and_hints_its_events(git_repo):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from runs import events
    from runs.events import deltas_group, run_group
    from runs.sharedmem import shared_memory

    run = make_run(git_repo, "plan", "plan", rounds=0)
    # A mark another test of this process left on the same run id (and its cached answer).
    shared_memory().delete(f"deltas-watch:{run.pk}")
    events._watched.clear()
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(run_group(run.pk), channel)
    async_to_sync(layer.group_add)(deltas_group(), channel)
    run_inline(run.pk)
    kinds_sent = []
    while layer.channels.get(channel) and not layer.channels[channel].empty():
        kinds_sent.append(async_to_sync(layer.receive)(channel)["kind"])
    assert kinds_sent and "stage.delta" not in kinds_sent
    assert Run.objects.get(pk=run.pk).status == "succeeded"


def roles_of(messages, call_id) -> set[str]:
    return {
        m["payload"]["role"]
        for m in messages
        if m["kind"] == "stage.delta" and m["payload"]["call_id"] == call_id
    }


# A stage's statements as the claim, the engine's one batch and the outcome need them
# (the test's transaction makes each inner atomic a savepoint pair): 42 before issue 14,
# which read the stage, the run and the prior artifacts twice, looked for each artifact
# before inserting it and updated the run row twice per batch; 33 since. A regression
# fails here.
STAGE_STATEMENTS_MAX = 35


def test_a_stage_costs_a_bounded_number_of_statements(git_repo, fake_engine):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    run = make_run(git_repo, "plan", "research")
    plan, research = stage_of(run, "plan"), stage_of(run, "research")
    with CaptureQueriesContext(connection) as ctx:
        assert stage_execute(stage_run_id=plan.pk, worker="w1") == [research.pk]
    assert len(ctx.captured_queries) <= STAGE_STATEMENTS_MAX, len(ctx.captured_queries)
    plan.refresh_from_db()
    assert (plan.status, plan.attempt) == ("succeeded", 1)
    assert kinds(run) == [
        "run.started",
        "stage.started",
        "stage.progress",
        "artifact.created",
        "stage.finished",
    ]
    # What the stage.finished payload says without reading the row back.
    finished = RunEvent.objects.get(run=run, kind="stage.finished").payload
    assert finished == {
        "status": "succeeded",
        "confidence": plan.confidence,
        "approval": plan.approval,
        "duration_s": plan.duration_s,
        "attempt": 1,
    }


def test_a_stage_whose_artifact_exists_writes_only_the_missing_one(git_repo, fake_engine):
    run = make_run(git_repo, "code", "code")
    assert stage_artifacts_write(run=run, stage="code", artifact={"first": 1}, patch=None) == [
        "code.json"
    ]
    names = stage_artifacts_write(run=run, stage="code", artifact={"other": 1}, patch="+x\n")
    assert names == ["code.json", "diff.patch"]
    arts = {a.name: a for a in Artifact.objects.filter(run=run)}
    assert arts["code.json"].content == {"first": 1}  # the first write stands
    assert artifact_path(arts["diff.patch"]).read_text() == "+x\n"
    created = RunEvent.objects.filter(run=run, kind="artifact.created")
    assert [e.payload["name"] for e in created.order_by("seq")] == ["code.json", "diff.patch"]


def test_code_writes_its_two_artifacts_in_one_insert(git_repo, fake_engine):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    run = make_run(git_repo, "code", "code")
    with CaptureQueriesContext(connection) as ctx:
        stage_artifacts_write(run=run, stage="code", artifact={"a": 1}, patch="+x\n")
    inserts = [
        q for q in ctx.captured_queries if q["sql"].startswith('INSERT INTO "runs_artifact"')
    ]
    assert len(inserts) == 1
    arts = Artifact.objects.filter(run=run).order_by("id")
    assert [(a.name, a.kind) for a in arts] == [("code.json", "json"), ("diff.patch", "patch")]
    for art in arts:
        assert hashlib.sha256(artifact_path(art).read_bytes()).hexdigest() == art.sha256
