from __future__ import annotations

import pytest

from swarm import prompts
from swarm.context import StageCancelled
from swarm.debate import stage_run
from swarm.events import AgentMessage, LlmCallDone
from swarm.providers.base import ProviderTransientError
from swarm.repo import patch_check
from swarm.stages import DEBATER_ROLES
from tests.swarm.conftest import (
    ScriptedCompleter,
    by_kind,
    config,
    debater_answer,
    mediator_answer,
    stage_input,
    valid_artifacts,
)


async def run(facts, handler, *, stage="plan", events=None, **cfg_kw):
    completer = ScriptedCompleter(handler)
    input_kw = cfg_kw.pop("input_kw", {})
    out = await stage_run(
        stage_input(facts, stage, **input_kw),
        config(**cfg_kw),
        completer=completer,
        emit=(events.append if events is not None else lambda e: None),
    )
    return out, completer


async def test_debaters_of_a_round_run_concurrently(facts):
    out, completer = await run(facts, by_kind())
    assert out.status == "succeeded"
    assert completer.max_in_flight == 3


async def test_sequential_mode_runs_one_call_at_a_time(facts):
    out, completer = await run(facts, by_kind(), sequential=True)
    assert out.status == "succeeded"
    assert completer.max_in_flight == 1
    assert len(completer.requests) == 3 * 3 + 1


@pytest.mark.parametrize("rounds", [0, 1, 2, 3])
async def test_calls_are_three_per_round_plus_one_mediator(facts, rounds):
    out, completer = await run(facts, by_kind(), rounds=rounds)
    assert len(completer.requests) == 3 * (rounds + 1) + 1
    kinds = [r.metadata["kind"] for r in completer.requests]
    assert kinds.count("mediator") == 1
    assert completer.requests[-1].metadata["round"] == rounds + 1
    assert "artifact" in completer.requests[-1].json_schema["properties"]


async def test_quorum_is_weighted_by_self_confidence(facts):
    weights = {"proponent": (True, 0.9), "skeptic": (False, 0.3), "pragmatist": (True, 0.3)}
    handler = by_kind(debaters=lambda role, rnd: debater_answer(*weights[role]))
    out, _ = await run(facts, handler)
    assert out.status == "succeeded"
    assert out.approval == pytest.approx((0.9 + 0.3) / (0.9 + 0.3 + 0.3))
    assert {v.role: (v.approve, v.self_confidence) for v in out.votes} == weights


async def test_quorum_failure_blocks_and_names_the_no_voters(facts):
    weights = {"proponent": (True, 0.6), "skeptic": (False, 0.9), "pragmatist": (False, 0.5)}
    handler = by_kind(debaters=lambda role, rnd: debater_answer(*weights[role]))
    out, _ = await run(facts, handler)
    expected = 0.6 / (0.6 + 0.9 + 0.5)
    assert out.status == "blocked"
    assert out.approval == pytest.approx(expected)
    assert out.reason == f"quorum {expected:.2f} < 0.67 (skeptic and pragmatist voted no)"
    # The draft survives for "approve anyway", with the mediator's confidence.
    assert out.artifact == {**valid_artifacts()["plan"], "offline": False, "confidence": 0.85}


async def test_only_the_last_round_vote_counts(facts):
    # The skeptic says no in the opening round and yes after the debate.
    def debaters(role, rnd):
        return debater_answer(approve=not (role == "skeptic" and rnd == 0), conf=0.9)

    out, _ = await run(facts, by_kind(debaters=debaters), rounds=1)
    assert out.status == "succeeded"
    assert out.approval == pytest.approx(1.0)


async def test_custom_quorum_changes_the_decision(facts):
    weights = {"proponent": (True, 0.8), "skeptic": (False, 0.8), "pragmatist": (True, 0.8)}
    handler = by_kind(debaters=lambda role, rnd: debater_answer(*weights[role]))
    passed, _ = await run(facts, handler, quorum=0.6)
    blocked, _ = await run(facts, handler, quorum=0.7)
    assert passed.status == "succeeded"
    assert blocked.status == "blocked" and blocked.reason.startswith("quorum 0.67 < 0.70")


async def test_low_mediator_confidence_blocks(facts):
    artifact = valid_artifacts()["plan"]
    out, _ = await run(
        facts, by_kind(mediator=lambda n: mediator_answer(artifact, confidence=0.55))
    )
    assert out.status == "blocked"
    assert out.reason == "confidence 0.55 < threshold 0.70"
    assert out.confidence == 0.55


async def test_the_artifact_carries_the_confidence_checked_against_the_threshold(facts):
    artifact = {**valid_artifacts()["plan"], "confidence": 0.99}
    out, _ = await run(
        facts, by_kind(mediator=lambda n: mediator_answer(artifact, confidence=0.55))
    )
    assert out.confidence == out.artifact["confidence"] == 0.55


async def test_review_that_says_block_blocks_the_stage(facts):
    review = {
        **valid_artifacts()["review"],
        "status": "block",
        "issues": ["SQL injection in /login"],
    }
    out, _ = await run(facts, by_kind(mediator=lambda n: mediator_answer(review)), stage="review")
    assert out.status == "blocked"
    assert "review says block: SQL injection in /login" in out.reason


async def test_review_that_says_revise_passes(facts):
    review = {**valid_artifacts()["review"], "status": "revise", "fixlist": ["rename x"]}
    out, _ = await run(facts, by_kind(mediator=lambda n: mediator_answer(review)), stage="review")
    assert out.status == "succeeded"


async def test_invalid_mediator_answer_is_repaired_once(facts):
    good = valid_artifacts()["plan"]
    bad = {k: v for k, v in good.items() if k != "goals"}
    out, completer = await run(
        facts, by_kind(mediator=lambda n: mediator_answer(bad if n == 0 else good))
    )
    assert out.status == "succeeded"
    repair = completer.requests[-1]
    assert repair.metadata["kind"] == "repair" and repair.metadata["repairs"] == "mediator"
    assert (
        "goals" in repair.messages[-1].content and "Field required" in repair.messages[-1].content
    )
    assert len(completer.requests) == 3 * 3 + 2


async def test_mediator_invalid_twice_blocks_with_the_error(facts):
    bad = {**valid_artifacts()["plan"], "confidence": 1.5, "goals": []}
    out, completer = await run(facts, by_kind(mediator=lambda n: mediator_answer(bad)))
    assert out.status == "blocked"
    assert out.artifact is None
    assert out.reason.startswith("artifact failed validation: plan artifact invalid:")
    assert "goals:" in out.reason and "confidence:" in out.reason
    assert [r.metadata["kind"] for r in completer.requests[-2:]] == ["mediator", "repair"]


async def test_mediator_answer_that_is_not_json_is_repaired(facts):
    good = mediator_answer(valid_artifacts()["plan"])
    out, completer = await run(
        facts, by_kind(mediator=lambda n: "I think it's fine" if n == 0 else good)
    )
    assert out.status == "succeeded"
    assert "not JSON" in completer.requests[-1].messages[-1].content


async def test_fenced_json_answers_are_accepted(facts):
    import json

    good = mediator_answer(valid_artifacts()["plan"])
    fenced = "```json\n" + json.dumps(good) + "\n```"
    out, completer = await run(facts, by_kind(mediator=lambda n: fenced))
    assert out.status == "succeeded"
    assert len(completer.requests) == 10


async def test_invalid_debater_is_repaired(facts):
    calls = []

    def debaters(role, rnd):
        calls.append((role, rnd))
        if role == "skeptic" and calls.count((role, rnd)) == 1:
            return {"position": "no shape"}
        return debater_answer()

    out, completer = await run(facts, by_kind(debaters=debaters), rounds=0)
    assert out.status == "succeeded"
    assert [v.role for v in out.votes] == ["proponent", "skeptic", "pragmatist"]
    repairs = [r for r in completer.requests if r.metadata["kind"] == "repair"]
    assert [r.metadata["role"] for r in repairs] == ["skeptic"]


async def test_debater_invalid_after_repair_casts_no_vote(facts):
    def debaters(role, rnd):
        return {"position": ""} if role == "pragmatist" else debater_answer(conf=0.7)

    out, completer = await run(facts, by_kind(debaters=debaters), rounds=1)
    assert out.status == "succeeded"
    assert [v.role for v in out.votes] == ["proponent", "skeptic"]
    mediator_prompt = "".join(m.text for m in completer.requests[-1].messages)
    assert "answer discarded after a repair: pragmatist answer invalid" in mediator_prompt


async def test_no_valid_votes_blocks(facts):
    out, _ = await run(facts, by_kind(debaters=lambda role, rnd: {"bad": 1}), rounds=0)
    assert out.status == "blocked"
    assert "no debater cast a valid vote" in out.reason
    assert out.approval == 0.0


async def test_code_stage_blocks_when_the_patch_does_not_apply(facts):
    code = valid_artifacts()["code"]
    broken = {
        **code,
        "diff": (
            "--- a/app/main.py\n+++ b/app/main.py\n@@ -1,2 +1,2 @@\n"
            "-def nothing_like_this():\n+def health():\n     return 'ok'\n"
        ),
        "files_changed": ["app/main.py"],
    }
    ok_out, _ = await run(facts, by_kind(mediator=lambda n: mediator_answer(code)), stage="code")
    bad_out, _ = await run(facts, by_kind(mediator=lambda n: mediator_answer(broken)), stage="code")
    assert ok_out.status == "succeeded"
    assert ok_out.patch == code["diff"]
    assert ok_out.checks == [
        {"name": "patch_applies", "ok": True, "detail": patch_check(facts.path, code["diff"])[1]}
    ]
    assert bad_out.status == "blocked"
    assert bad_out.reason.startswith("patch does not apply: git apply --check failed")


async def test_code_stage_accepts_an_empty_diff_in_debate_mode(facts):
    empty = {**valid_artifacts()["code"], "diff": "", "files_changed": []}
    out, _ = await run(facts, by_kind(mediator=lambda n: mediator_answer(empty)), stage="code")
    assert out.status == "succeeded"
    assert out.checks[0]["ok"] is True


def _draft_handler(artifact):
    return lambda request: artifact


async def test_consensus_free_code_with_a_patch_that_applies(facts):
    code = valid_artifacts()["code"]
    out, completer = await run(facts, _draft_handler(code), stage="code", consensus_free=True)
    assert out.status == "succeeded"
    assert [c["name"] for c in out.checks] == ["schema", "patch_applies"]
    assert all(c["ok"] for c in out.checks)
    assert len(completer.requests) == 1
    assert completer.requests[0].metadata == {
        "stage": "code", "role": "proponent", "round": 0, "kind": "draft", "attempt": 1, "run_id": None,
    }  # fmt: skip
    assert out.votes == [] and out.approval is None


async def test_consensus_free_code_with_a_patch_that_does_not_apply(facts, git_repo):
    # The patch deletes a line that the working tree no longer has.
    (git_repo / "app" / "main.py").write_text("def health():\n    return 'changed'\n")
    code = {
        **valid_artifacts()["code"],
        "diff": "--- a/app/main.py\n+++ b/app/main.py\n@@ -1,2 +1,2 @@\n def health():\n-    return 'ok'\n+    return 'OK'\n",
        "files_changed": ["app/main.py"],
    }
    out, _ = await run(facts, _draft_handler(code), stage="code", consensus_free=True)
    assert out.status == "blocked"
    assert out.checks[0] == {
        "name": "schema",
        "ok": True,
        "detail": "validates as the code artifact",
    }
    assert out.checks[1]["ok"] is False
    assert out.reason.startswith("check patch_applies failed: git apply --check failed")


async def test_consensus_free_empty_diff_fails_the_checks(facts):
    empty = {**valid_artifacts()["code"], "diff": "", "files_changed": []}
    out, _ = await run(facts, _draft_handler(empty), stage="code", consensus_free=True)
    assert out.status == "blocked"
    assert "empty diff" in out.reason


async def test_consensus_free_invalid_draft_blocks_after_a_repair(facts):
    out, completer = await run(
        facts, _draft_handler({"ship": "yes"}), stage="test_debug", consensus_free=True
    )
    assert out.status == "blocked"
    assert out.reason.startswith("artifact failed validation: test_debug artifact invalid:")
    assert "ship: Input should be a valid boolean" in out.reason
    assert len(completer.requests) == 2


async def test_consensus_free_test_report_that_says_no_ship_blocks(facts):
    report = {**valid_artifacts()["test_debug"], "ship": False}
    out, _ = await run(facts, _draft_handler(report), stage="test_debug", consensus_free=True)
    assert out.status == "blocked"
    assert out.reason == "check ship failed: report says no-ship"


async def test_cancellation_between_rounds(facts):
    completer = ScriptedCompleter(by_kind())
    checks = []

    def is_cancelled():
        checks.append(len(completer.requests))
        return len(completer.requests) >= 3

    with pytest.raises(StageCancelled):
        await stage_run(
            stage_input(facts),
            config(),
            completer=completer,
            emit=lambda e: None,
            is_cancelled=is_cancelled,
        )
    assert len(completer.requests) == 3
    assert checks == [0, 3]


async def test_events_for_every_answer_and_every_call(facts):
    events = []
    out, completer = await run(facts, by_kind(), events=events, rounds=2)
    messages = [e for e in events if isinstance(e, AgentMessage)]
    calls = [e for e in events if isinstance(e, LlmCallDone)]
    assert len(messages) == 3 * 3 + 1
    assert len(calls) == len(completer.requests)
    assert [m.round for m in messages if m.role == "mediator"] == [3]
    # The transcript keeps the mediator's words; the artifact takes its checked confidence.
    said = messages[-1].answer
    assert {**said["artifact"], "confidence": said["confidence"]} == out.artifact
    assert out.input_tokens == sum(c.input_tokens for c in calls) == 100 * len(calls)
    assert out.cost_usd == pytest.approx(0.001 * len(calls))
    assert {c.provider for c in calls} == {"scripted"}


async def test_answers_are_redacted_before_they_are_emitted(facts):
    key = "sk-ant-api03-" + "A1b2C3d4" * 6
    events = []
    handler = by_kind(
        debaters=lambda role, rnd: debater_answer(position=f"use {key} for alice@example.com")
    )
    await run(facts, handler, events=events)
    positions = [
        e.answer["position"] for e in events if isinstance(e, AgentMessage) and e.role != "mediator"
    ]
    assert positions and all(key not in p and "alice@example.com" not in p for p in positions)
    assert all("[API_KEY#1]" in p and "[EMAIL#1]" in p for p in positions)


async def test_provider_errors_propagate_and_are_recorded(facts):
    key = "sk-or-v1-" + "f" * 40

    def handler(request):
        if request.metadata["role"] == "skeptic":
            return ProviderTransientError(f"503 from gateway with key {key}", status=503)
        return debater_answer()

    events = []
    with pytest.raises(ProviderTransientError):
        await run(facts, handler, events=events)
    failed = [e for e in events if isinstance(e, LlmCallDone) and e.error]
    assert len(failed) == 1
    assert failed[0].role == "skeptic" and failed[0].error.startswith("ProviderTransientError: 503")
    assert key not in failed[0].error


async def test_a_role_without_a_model_is_a_clear_error(facts):
    with pytest.raises(ValueError, match="no model configured for role 'mediator' in stage 'plan'"):
        await run(
            facts, by_kind(), models={"proponent": "a/b", "skeptic": "a/b", "pragmatist": "a/b"}
        )


async def test_default_model_covers_missing_roles(facts):
    out, completer = await run(facts, by_kind(), models={"default": "x/y", "mediator": "m/m"})
    assert out.status == "succeeded"
    assert {r.model for r in completer.requests} == {"x/y", "m/m"}


async def test_bad_quorum_is_rejected(facts):
    with pytest.raises(ValueError, match=r"quorum must be in \[0, 1\], got 1.5"):
        await run(facts, by_kind(), quorum=1.5)


async def test_retry_note_and_prior_artifacts_reach_the_prompts(facts):
    plan = valid_artifacts()["plan"]
    out, completer = await run(
        facts,
        by_kind(stage="research"),
        stage="research",
        input_kw={"note": "prefer the stdlib", "prior_artifacts": {"plan": plan}},
    )
    assert out.status == "succeeded"
    for request in completer.requests:
        run_part, stage_part = (m.text for m in request.messages[1:3])  # in the prefix
        assert "GET /health returns 200" in run_part and "prefer the stdlib" in stage_part


async def test_mediator_that_says_block_blocks(facts):
    artifact = valid_artifacts()["plan"]
    answer = mediator_answer(artifact, status="block", rationale="the goal contradicts itself")
    out, _ = await run(facts, by_kind(mediator=lambda n: answer))
    assert out.status == "blocked"
    assert out.reason == "mediator said block: the goal contradicts itself"
    assert out.mediator["status"] == "block"


async def test_cache_prefixes_are_marked_where_a_later_call_reads_them(facts):
    out, completer = await run(facts, by_kind(), rounds=2, input_kw={"run_id": 7, "attempt": 2})
    assert out.status == "succeeded"
    marks = {
        (r.metadata["kind"], r.metadata["role"], r.metadata["round"]): (
            r.cache_prefix,
            r.cache_shared,
        )
        for r in completer.requests
    }
    run_part, shared = prompts.RUN_MESSAGES, prompts.SHARED_MESSAGES
    # A round's calls run at once: only the proponent's marks (writes) what is new in the
    # round (the stage's context, then the last round's transcript); the others mark what
    # an earlier call wrote (the run's part, the transcript up to the round before).
    assert [marks["debater", role, 0] for role in DEBATER_ROLES] == [
        (shared, run_part),
        (run_part, run_part),
        (run_part, run_part),
    ]
    for rnd in (1, 2):
        assert [marks["debater", role, rnd][0] for role in DEBATER_ROLES] == [
            shared + rnd,
            shared + rnd - 1,
            shared + rnd - 1,
        ]
    # The mediator's prefix (its own schema) no one reads.
    assert marks["mediator", "mediator", 3] == (0, 0)
    assert all(r.answer_schemas == () for r in completer.requests)
    assert {r.cache_key for r in completer.requests} == {"tekton-run7-plan-2"}
    # Every call's prefix is the same messages, and a round's prompt starts with the
    # round before's: what differs is its last message.
    prefixes = {r.messages[:shared] for r in completer.requests}
    assert len(prefixes) == 1
    by_round = {r.metadata["round"]: r.messages for r in completer.requests}
    assert by_round[2][: shared + 1] == by_round[1][: shared + 1]
    assert by_round[3][: shared + 2] == by_round[2][: shared + 2]  # the mediator's


class _PricedCompleter(ScriptedCompleter):
    """A completer whose calls cost money, as a vendor's do."""

    def price_for(self, model: str) -> tuple[float, float]:
        return (3.0, 15.0)


async def test_on_one_priced_model_the_opening_proponent_goes_first(facts):
    alone: dict[tuple[str, int], int] = {}
    inner = by_kind()

    def handler(request):
        # How many calls are in flight while this one is answered.
        alone[request.metadata["role"], request.metadata["round"]] = completer.in_flight
        return inner(request)

    completer = _PricedCompleter(handler)
    out = await stage_run(
        stage_input(facts, "plan"),
        config(rounds=1, models={"default": "vendor/one"}),
        completer=completer,
        emit=lambda e: None,
    )
    assert out.status == "succeeded"
    assert alone["proponent", 0] == 1
    assert max(alone["skeptic", 0], alone["pragmatist", 0]) == 2  # those two together
    assert completer.max_in_flight == 3  # the debate rounds still run at once
    # So the other two read the whole prefix it wrote, the stage's context included.
    opening = [r for r in completer.requests if r.metadata["round"] == 0]
    assert [r.cache_prefix for r in opening] == [prompts.SHARED_MESSAGES] * 3
    # And the mediator reads what the last round's proponent wrote: every call of the
    # stage is offered both answer schemas, so the tools before the prefix are the same.
    offered = completer.requests[0].answer_schemas
    assert all(r.answer_schemas == offered for r in completer.requests)
    assert [name for name, _ in offered] == ["debater_answer", "mediator_answer"]
    (mediator,) = [r for r in completer.requests if r.metadata["role"] == "mediator"]
    assert mediator.cache_prefix == prompts.SHARED_MESSAGES + 1


@pytest.mark.parametrize(
    "priced, kw",
    [
        (True, {"models": {"default": "vendor/one", "skeptic": "vendor/two"}}),
        (False, {"models": {"default": "offline/x"}}),
        (True, {"models": {"default": "vendor/one"}, "cache_stagger": False}),
    ],
)
async def test_free_mixed_or_unstaggered_models_open_all_at_once(facts, priced, kw):
    completer = _PricedCompleter(by_kind()) if priced else ScriptedCompleter(by_kind())
    out = await stage_run(
        stage_input(facts, "plan"), config(rounds=0, **kw), completer=completer, emit=lambda e: None
    )
    assert out.status == "succeeded"
    assert completer.max_in_flight == 3
    # Each call offered its own answer schema only; the mediator's prefix is its own.
    assert all(r.answer_schemas == () for r in completer.requests)
    assert completer.requests[-1].cache_prefix == 0


async def test_in_the_sequential_schedule_every_opening_call_marks_the_prefix(facts):
    _, completer = await run(facts, by_kind(), rounds=1, sequential=True)
    opening = [r for r in completer.requests if r.metadata["round"] == 0]
    assert [r.cache_prefix for r in opening] == [prompts.SHARED_MESSAGES] * 3
    assert {r.cache_key for r in completer.requests} == {None}  # no run: keyed by prefix
