from __future__ import annotations

import json

from swarm import prompts
from swarm.artifacts import artifact_json_schema
from swarm.context import Lesson
from swarm.stages import stage_get
from tests.swarm.conftest import debater_answer, stage_input, valid_artifacts

KEY = "sk-ant-api03-" + "k" * 40


def test_debater_prompt_carries_brief_goal_facts_and_prior_artifacts(facts):
    inp = stage_input(
        facts,
        "research",
        prior_artifacts={"plan": valid_artifacts()["plan"]},
        lessons=(Lesson(text="review blocked on missing tests", source="run 3 / review"),),
        note="use the stdlib",
    )
    system, user = prompts.debater_messages(inp, role="skeptic", round=0, rounds=2, transcript=[])
    spec = stage_get("research")
    assert spec.briefs["skeptic"] in system.content and spec.produces in system.content
    assert "use the stdlib" in user.content and "review blocked on missing tests" in user.content
    ctx = prompts.context_extract([system, user])
    assert ctx["goal"] == inp.goal and ctx["role"] == "skeptic"
    assert ctx["prior_artifacts"] == {"plan": valid_artifacts()["plan"]}
    assert ctx["repo"]["files"] == list(facts.files)
    assert ctx["repo"]["languages"] == facts.languages
    assert prompts.TRANSCRIPT_OPEN not in user.content  # the opening round sees no transcript


def test_debate_round_shows_the_transcript_and_the_proposal_in_hand(facts):
    transcript = [
        {"role": "proponent", "round": 0, **debater_answer(position="plan A")},
        {"role": "skeptic", "round": 0, **debater_answer(approve=False, position="no")},
    ]
    _, user = prompts.debater_messages(
        stage_input(facts), role="pragmatist", round=1, rounds=2, transcript=transcript
    )
    assert prompts.transcript_extract([user]) == transcript
    assert "the proponent's round 0 position" in user.content


def test_mediator_prompt_has_the_artifact_schema(facts):
    schema = artifact_json_schema("plan")
    system, user = prompts.mediator_messages(
        stage_input(facts), transcript=[], artifact_schema=schema
    )
    assert json.dumps(schema, ensure_ascii=False, separators=(",", ":")) in system.content
    assert prompts.transcript_extract([user]) == []


def test_everything_inserted_is_redacted(facts):
    inp = stage_input(facts, goal=f"rotate {KEY} for ops@example.com", note=f"key is {KEY}")
    transcript = [{"role": "proponent", "round": 0, **debater_answer(position=f"reuse {KEY}")}]
    for messages in (
        prompts.debater_messages(inp, role="proponent", round=1, rounds=2, transcript=transcript),
        prompts.mediator_messages(inp, transcript=transcript, artifact_schema={}),
        prompts.draft_messages(inp, artifact_schema={}),
        prompts.repair_messages([], bad_text=KEY, error=f"bad {KEY}"),
    ):
        text = "\n".join(m.content for m in messages)
        assert KEY not in text and "ops@example.com" not in text
    _, user = prompts.debater_messages(
        inp, role="proponent", round=1, rounds=2, transcript=transcript
    )
    assert "[API_KEY#1]" in user.content  # one labeller per prompt: same key, same label
    assert "[API_KEY#2]" not in user.content


def test_a_goal_containing_a_marker_does_not_break_the_block(facts):
    goal = (
        f"explain {prompts.CONTEXT_OPEN} {prompts.CONTEXT_CLOSE} and {prompts.TRANSCRIPT_OPEN} tags"
    )
    inp = stage_input(facts, goal=goal, note=goal)
    messages = prompts.debater_messages(inp, role="skeptic", round=0, rounds=1, transcript=[])
    assert prompts.context_extract(messages)["goal"] == goal
    assert prompts.context_extract(messages)["note"] == goal
