from __future__ import annotations

import json

from swarm import prompts
from swarm.artifacts import artifact_json_schema
from swarm.context import Lesson
from swarm.providers.base import Message
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
    system, run_part, user, turn = prompts.debater_messages(
        inp, role="skeptic", round=0, rounds=2, transcript=[]
    )
    spec = stage_get("research")
    assert spec.briefs["skeptic"] in turn.content and spec.produces in user.content
    assert "use the stdlib" in user.content and "review blocked on missing tests" in user.content
    assert "use the stdlib" not in run_part.text  # a stage's note is the stage's
    ctx = prompts.context_extract([system, run_part, user, turn])
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
    messages = prompts.debater_messages(
        stage_input(facts), role="pragmatist", round=1, rounds=2, transcript=transcript
    )
    *_, turn = messages
    assert prompts.transcript_extract(messages) == transcript
    assert prompts.transcript_extract([turn]) == []  # the transcript is before the turn
    assert "the proponent's round 0 position" in turn.content


def test_mediator_prompt_has_the_artifact_schema(facts):
    schema = artifact_json_schema("plan")
    messages = prompts.mediator_messages(stage_input(facts), transcript=[], artifact_schema=schema)
    # In the turn, after the prefix the mediator would share with the debaters.
    assert json.dumps(schema, ensure_ascii=False, separators=(",", ":")) in messages[-1].content
    assert prompts.transcript_extract(messages) == []


def test_everything_inserted_is_redacted(facts):
    inp = stage_input(facts, goal=f"rotate {KEY} for ops@example.com", note=f"key is {KEY}")
    transcript = [{"role": "proponent", "round": 0, **debater_answer(position=f"reuse {KEY}")}]
    for messages in (
        prompts.debater_messages(inp, role="proponent", round=1, rounds=2, transcript=transcript),
        prompts.mediator_messages(inp, transcript=transcript, artifact_schema={}),
        prompts.draft_messages(inp, artifact_schema={}),
        prompts.repair_messages([], bad_text=KEY, error=f"bad {KEY}"),
    ):
        text = "\n".join(m.text for m in messages)
        assert KEY not in text and "ops@example.com" not in text
    _, user, _, shown, turn = prompts.debater_messages(
        inp, role="proponent", round=1, rounds=2, transcript=transcript
    )
    turn = Message("user", shown.content + turn.content)
    # One labeller per prompt: the same key has the same label in the context and the turn.
    assert "[API_KEY#1]" in user.text and "[API_KEY#1]" in turn.content
    assert "[API_KEY#2]" not in user.text + turn.content


def test_a_stages_calls_share_one_prefix_and_differ_only_in_the_last_message(facts):
    inp = stage_input(facts, "research", prior_artifacts={"plan": valid_artifacts()["plan"]})
    entries = [{"role": "proponent", "round": 0, **debater_answer(position="plan A")}]
    later = [{"role": "skeptic", "round": 1, **debater_answer(position="plan B")}]
    prompts_of_stage = [
        prompts.debater_messages(inp, role=role, round=rnd, rounds=2, transcript=seen)
        for rnd, seen in ((0, []), (1, entries), (2, entries + later))
        for role in ("proponent", "skeptic", "pragmatist")
    ]
    shared = prompts.SHARED_MESSAGES
    assert {tuple(p[:shared]) for p in prompts_of_stage} == {tuple(prompts_of_stage[0][:shared])}
    # One message per round so far, then the turn.
    assert [len(p) for p in prompts_of_stage] == [shared + 1] * 3 + [shared + 2] * 3 + [
        shared + 3
    ] * 3
    assert len({p[-1].content for p in prompts_of_stage}) == len(prompts_of_stage)
    # What differs is after the prefix: no role, round or transcript in it.
    prefix_text = "".join(m.text for m in prompts_of_stage[-1][:shared])
    assert "skeptic" not in prefix_text.split("a skeptic and", 1)[1]
    assert prompts.TRANSCRIPT_OPEN not in prefix_text and "plan A" not in prefix_text
    # Round 2's prompt starts with round 1's, the round-0 transcript included.
    assert prompts_of_stage[6][: shared + 1] == prompts_of_stage[3][: shared + 1]
    assert prompts.transcript_extract(prompts_of_stage[6]) == entries + later
    assert prompts.context_extract(prompts_of_stage[4])["role"] == "skeptic"
    assert prompts.context_extract(prompts_of_stage[4])["round"] == 1


def test_the_run_part_is_shared_across_stages_and_grows_at_its_end(facts):
    artifacts = valid_artifacts()
    plan = stage_input(facts, "plan")
    research = stage_input(facts, "research", prior_artifacts={"plan": artifacts["plan"]})
    # Artifacts in stage order, whatever order they came in.
    later = stage_input(
        facts,
        "plan_update",
        prior_artifacts={"research": artifacts["research"], "plan": artifacts["plan"]},
    )
    run_parts = [
        prompts.debater_messages(i, role="skeptic", round=0, rounds=1, transcript=[])[
            : prompts.RUN_MESSAGES
        ]
        for i in (plan, research, later)
    ]
    assert run_parts[0][0] == run_parts[1][0] == run_parts[2][0]  # one system text
    texts = [part[1].text for part in run_parts]
    assert texts[2].startswith(texts[1]) and texts[1].startswith(texts[0])
    ctx = prompts.context_extract(
        prompts.debater_messages(later, role="skeptic", round=0, rounds=1, transcript=[])
    )
    assert ctx["prior_artifacts"] == {"plan": artifacts["plan"], "research": artifacts["research"]}
    assert ctx["stage"] == "plan_update" and ctx["goal"] == later.goal


def test_a_goal_containing_a_marker_does_not_break_the_block(facts):
    goal = (
        f"explain {prompts.CONTEXT_OPEN} {prompts.CONTEXT_CLOSE} and {prompts.TRANSCRIPT_OPEN} tags"
    )
    inp = stage_input(facts, goal=goal, note=goal)
    messages = prompts.debater_messages(inp, role="skeptic", round=0, rounds=1, transcript=[])
    assert prompts.context_extract(messages)["goal"] == goal
    assert prompts.context_extract(messages)["note"] == goal


def test_a_stages_head_is_built_once_and_labels_go_on_from_it(facts, monkeypatch):
    """Every call of a stage shares its input; the head is built at the first call, and a
    later call's transcript numbers its secrets after the head's, as if it had built it."""
    built: list[str] = []
    real = prompts._stage_message
    monkeypatch.setattr(
        prompts, "_stage_message", lambda inp, label: built.append(inp.stage) or real(inp, label)
    )
    other = "sk-ant-" + "b" * 30
    inp = stage_input(facts, goal=f"rotate {KEY}")
    transcript = [{"role": "proponent", "round": 0, **debater_answer(position=f"use {other}")}]
    first, second = (
        prompts.debater_messages(inp, role=role, round=1, rounds=2, transcript=transcript)
        for role in ("skeptic", "pragmatist")
    )
    assert built == ["plan"]
    assert first[:3] == second[:3]
    for messages in (first, second):
        text = "\n".join(m.text for m in messages)
        assert text.count("[API_KEY#1]") >= 1 and "[API_KEY#2]" in messages[3].text
    # Another input (another stage, or the same stage's next attempt) builds its own.
    prompts.debater_messages(
        stage_input(facts, goal=f"rotate {KEY}"), role="skeptic", round=1, rounds=2,
        transcript=transcript,
    )  # fmt: skip
    assert built == ["plan", "plan"]
