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
    system, user, turn = prompts.debater_messages(
        inp, role="skeptic", round=0, rounds=2, transcript=[]
    )
    spec = stage_get("research")
    assert spec.briefs["skeptic"] in turn.content and spec.produces in system.content
    assert "use the stdlib" in user.content and "review blocked on missing tests" in user.content
    ctx = prompts.context_extract([system, user, turn])
    assert ctx["goal"] == inp.goal and ctx["role"] == "skeptic"
    assert ctx["prior_artifacts"] == {"plan": valid_artifacts()["plan"]}
    assert ctx["repo"]["files"] == list(facts.files)
    assert ctx["repo"]["languages"] == facts.languages
    assert prompts.TRANSCRIPT_OPEN not in turn.content  # the opening round sees no transcript


def test_debate_round_shows_the_transcript_and_the_proposal_in_hand(facts):
    transcript = [
        {"role": "proponent", "round": 0, **debater_answer(position="plan A")},
        {"role": "skeptic", "round": 0, **debater_answer(approve=False, position="no")},
    ]
    *_, turn = prompts.debater_messages(
        stage_input(facts), role="pragmatist", round=1, rounds=2, transcript=transcript
    )
    assert prompts.transcript_extract([turn]) == transcript
    assert "the proponent's round 0 position" in turn.content


def test_mediator_prompt_has_the_artifact_schema(facts):
    schema = artifact_json_schema("plan")
    system, _, turn = prompts.mediator_messages(
        stage_input(facts), transcript=[], artifact_schema=schema
    )
    assert json.dumps(schema, ensure_ascii=False, separators=(",", ":")) in system.content
    assert prompts.transcript_extract([turn]) == []


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
    _, user, turn = prompts.debater_messages(
        inp, role="proponent", round=1, rounds=2, transcript=transcript
    )
    # One labeller per prompt: the same key has the same label in the context and the turn.
    assert "[API_KEY#1]" in user.content and "[API_KEY#1]" in turn.content
    assert "[API_KEY#2]" not in user.content + turn.content


def test_a_stages_calls_share_one_prefix_and_differ_only_in_the_last_message(facts):
    inp = stage_input(facts, "research", prior_artifacts={"plan": valid_artifacts()["plan"]})
    entries = [{"role": "proponent", "round": 0, **debater_answer(position="plan A")}]
    prompts_of_stage = [
        prompts.debater_messages(inp, role=role, round=rnd, rounds=2, transcript=seen)
        for rnd, seen in ((0, []), (1, entries), (2, entries * 2))
        for role in ("proponent", "skeptic", "pragmatist")
    ]
    shared = prompts.SHARED_MESSAGES
    assert {tuple(p[:shared]) for p in prompts_of_stage} == {tuple(prompts_of_stage[0][:shared])}
    assert all(len(p) == shared + 1 for p in prompts_of_stage)
    assert len({p[-1].content for p in prompts_of_stage}) == len(prompts_of_stage)
    # What differs is after the prefix: no role, round or transcript in it.
    prefix_text = "".join(m.content for m in prompts_of_stage[-1][:shared])
    assert "skeptic" not in prefix_text.split("a skeptic and", 1)[1]
    assert prompts.TRANSCRIPT_OPEN not in prefix_text and "plan A" not in prefix_text
    # A round's transcript starts with the round before's, so the three calls of a round
    # share it and the next round repeats it as its start.
    one, two = (
        p[-1].content.split(prompts.TRANSCRIPT_CLOSE)[0]
        for p in (prompts_of_stage[3], prompts_of_stage[6])
    )
    assert two.startswith(one.rstrip().removesuffix("]"))
    assert prompts.context_extract(prompts_of_stage[4])["role"] == "skeptic"
    assert prompts.context_extract(prompts_of_stage[4])["round"] == 1


def test_a_goal_containing_a_marker_does_not_break_the_block(facts):
    goal = (
        f"explain {prompts.CONTEXT_OPEN} {prompts.CONTEXT_CLOSE} and {prompts.TRANSCRIPT_OPEN} tags"
    )
    inp = stage_input(facts, goal=goal, note=goal)
    messages = prompts.debater_messages(inp, role="skeptic", round=0, rounds=1, transcript=[])
    assert prompts.context_extract(messages)["goal"] == goal
    assert prompts.context_extract(messages)["note"] == goal
