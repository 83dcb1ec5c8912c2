from __future__ import annotations

import json

import pytest

from swarm import prompts
from swarm.artifacts import artifact_validate
from swarm.context import StageInput
from swarm.debate import stage_run
from swarm.events import AgentMessage, LlmCallDone
from swarm.providers import offline as offline_mod
from swarm.providers.base import CompletionRequest, Message, Provider
from swarm.providers.offline import LATENCY_ENV, OfflineProvider
from swarm.repo import patch_check
from swarm.stages import STAGE_NAMES
from tests.swarm.conftest import config, stage_input


def debater_request(facts, *, goal="Add a /health endpoint", role="skeptic", rnd=1, stage="plan"):
    inp = stage_input(facts, stage, goal=goal)
    messages = prompts.debater_messages(inp, role=role, round=rnd, rounds=2, transcript=[])
    return CompletionRequest(
        model="anthropic/claude-opus-4.1",
        messages=tuple(messages),
        json_schema={"type": "object"},
        metadata={"stage": stage, "role": role, "round": rnd, "kind": "debater"},
    )


async def full_run(facts, goal, *, attempt=1, note="", **cfg_kw):
    provider = OfflineProvider(latency_ms=0)
    prior: dict = {}
    outcomes, events = {}, []
    for stage in STAGE_NAMES:
        inp = StageInput(
            stage=stage,
            goal=goal,
            repo=facts,
            prior_artifacts=dict(prior),
            attempt=attempt,
            note=note,
        )
        out = await stage_run(inp, config(**cfg_kw), completer=provider, emit=events.append)
        outcomes[stage] = out
        prior[stage] = out.artifact
    return outcomes, events


def test_offline_provider_satisfies_the_provider_protocol():
    assert isinstance(OfflineProvider(latency_ms=0), Provider)


async def test_same_request_same_answer(facts):
    provider = OfflineProvider(latency_ms=0)
    first = await provider.complete(debater_request(facts))
    second = await provider.complete(debater_request(facts))
    assert first.text == second.text
    assert first.parsed == json.loads(first.text)
    assert first.provider == "offline" and first.cost_usd == 0.0
    assert first.usage.output_tokens == len(first.text) // 4


async def test_answers_vary_with_the_request(facts):
    provider = OfflineProvider(latency_ms=0)
    texts = {
        (await provider.complete(debater_request(facts, goal=f"goal number {i}"))).text
        for i in range(6)
    }
    assert len(texts) == 6
    confidences = {json.loads(t)["self_confidence"] for t in texts}
    assert len(confidences) > 1


async def test_full_run_produces_nine_valid_offline_artifacts(facts, git_repo):
    outcomes, events = await full_run(facts, "Add a /health endpoint")
    for stage, out in outcomes.items():
        assert out.status == "succeeded", (stage, out.reason)
        assert out.artifact["offline"] is True
        assert artifact_validate(stage, out.artifact) == out.artifact
        assert 0.70 <= out.confidence <= 1.0
    # The code stage's diff is a real patch against this repository.
    code = outcomes["code"]
    assert code.patch == code.artifact["diff"]
    assert patch_check(str(git_repo), code.patch) == (
        True,
        "git apply --check: the diff applies cleanly",
    )
    (note_path,) = code.artifact["files_changed"]
    assert note_path.startswith("docs/tekton/add-a-health-endpoint-") and note_path.endswith(".md")
    # Built from the repository's real facts and the earlier artifacts.
    assert "Python" in code.patch and "tests/" in code.patch
    backlog = outcomes["plan_update"].artifact["items"]
    assert all(item["item_id"] in code.patch for item in backlog)
    assert outcomes["threat"].artifact["dfd"].endswith(note_path)
    assert outcomes["release"].artifact["version"] == f"0.0.0+offline.{facts.head[:7]}"
    assert len([e for e in events if isinstance(e, AgentMessage)]) == 9 * 10
    assert len([e for e in events if isinstance(e, LlmCallDone)]) == 9 * 10


async def test_offline_quorum_really_varies(facts):
    approvals = set()
    for i in range(4):
        outcomes, _ = await full_run(facts, f"Goal variant {i}", rounds=1)
        approvals |= {round(o.approval, 4) for o in outcomes.values()}
        assert all(o.status == "succeeded" for o in outcomes.values())
    assert any(a < 1.0 for a in approvals)  # some skeptic said no somewhere, and it still passed
    assert 1.0 in approvals


async def test_block_marker_blocks_that_stage_on_the_first_attempt_only(facts):
    goal = "Add a /health endpoint [offline:block=review]"
    inp = stage_input(facts, "review", goal=goal)
    provider = OfflineProvider(latency_ms=0)
    blocked = await stage_run(inp, config(), completer=provider, emit=lambda e: None)
    assert blocked.status == "blocked"
    assert "(skeptic and pragmatist voted no)" in blocked.reason
    assert blocked.artifact is not None  # a person may still approve it
    other = await stage_run(
        stage_input(facts, "plan", goal=goal), config(), completer=provider, emit=lambda e: None
    )
    assert other.status == "succeeded"
    for retry in (
        stage_input(facts, "review", goal=goal, attempt=2),
        stage_input(facts, "review", goal=goal, note="go"),
    ):
        out = await stage_run(retry, config(), completer=provider, emit=lambda e: None)
        assert out.status == "succeeded", out.reason


async def test_invalid_marker_blocks_with_the_validation_error(facts):
    goal = "Tidy up [offline:invalid=plan]"
    provider = OfflineProvider(latency_ms=0)
    out = await stage_run(
        stage_input(facts, "plan", goal=goal), config(), completer=provider, emit=lambda e: None
    )
    assert out.status == "blocked"
    assert out.reason.startswith("artifact failed validation: plan artifact invalid:")
    assert "confidence: Input should be less than or equal to 1" in out.reason


async def test_consensus_free_code_offline_passes_its_checks(facts):
    provider = OfflineProvider(latency_ms=0)
    inp = stage_input(facts, "code")
    out = await stage_run(inp, config(consensus_free=True), completer=provider, emit=lambda e: None)
    assert out.status == "succeeded", out.reason
    assert [c["name"] for c in out.checks] == ["schema", "patch_applies"]


async def test_offline_works_on_a_repository_without_commits(tmp_path):
    from swarm.repo import repo_facts
    from tests.swarm.conftest import make_repo

    empty = repo_facts(make_repo(tmp_path / "empty", {}))
    outcomes, _ = await full_run(empty, "Start a new project")
    assert all(o.status == "succeeded" for o in outcomes.values())
    assert outcomes["release"].artifact["version"] == "0.0.0+offline.nohead"
    assert patch_check(empty.path, outcomes["code"].patch)[0] is True


def test_latency_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(LATENCY_ENV, "250")
    assert OfflineProvider().latency_ms == 250.0
    monkeypatch.delenv(LATENCY_ENV)
    assert OfflineProvider().latency_ms == 0.0
    assert OfflineProvider(latency_ms=5).latency_ms == 5.0


@pytest.mark.parametrize("raw", ["fast", "-3"])
def test_bad_latency_variable_is_a_clear_error(monkeypatch, raw):
    monkeypatch.setenv(LATENCY_ENV, raw)
    with pytest.raises(ValueError, match=LATENCY_ENV):
        OfflineProvider()


async def test_latency_is_slept_on_every_call(monkeypatch, facts):
    slept = []

    async def fake_sleep(seconds):
        slept.append(seconds)

    monkeypatch.setattr(offline_mod.asyncio, "sleep", fake_sleep)
    monkeypatch.setenv(LATENCY_ENV, "40")
    provider = OfflineProvider()
    await provider.complete(debater_request(facts))
    await provider.complete(debater_request(facts, role="proponent"))
    assert slept == [0.04, 0.04]


async def test_requests_without_engine_metadata_get_a_labelled_text_answer():
    provider = OfflineProvider(latency_ms=0)
    done = await provider.complete(
        CompletionRequest(model="openai/gpt-4o", messages=(Message("user", "Say hi"),))
    )
    assert done.parsed is None
    assert done.text.startswith("[offline]") and "Say hi" in done.text


@pytest.mark.parametrize(
    ("rounds", "said"),
    [
        (0, "the opening"),
        (1, "the opening and 1 debate round"),
        (2, "the opening and 2 debate rounds"),
    ],
)
async def test_the_mediator_counts_rounds_as_the_page_shows_them(facts, rounds, said):
    # The page titles them Opening, Debate round 1..R, Mediator: "2 rounds" must not mean
    # the opening plus one.
    events: list = []
    inp = stage_input(facts, "plan")
    await stage_run(inp, config(rounds=rounds), completer=OfflineProvider(latency_ms=0),
                    emit=events.append)  # fmt: skip
    messages = [e for e in events if isinstance(e, AgentMessage)]
    (mediator,) = [m for m in messages if m.role == "mediator"]
    assert mediator.answer["rationale"].endswith(f"answers: {said}")
    debate_rounds = {m.round for m in messages if m.role != "mediator" and m.round > 0}
    assert len(debate_rounds) == rounds
