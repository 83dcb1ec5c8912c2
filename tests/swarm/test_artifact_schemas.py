"""Every constraint the validator checks is in the schema a model is given, or Tekton fills
it (REQUIREMENTS.md 2; issue 9): any instance of a model-facing schema validates once
artifact_complete has filled Tekton's facts in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema

from swarm.artifacts import (
    TEKTON_FILLED,
    UNSAYABLE,
    ArtifactInvalid,
    DebaterAnswer,
    MediatorAnswer,
    answer_validate,
    artifact_complete,
    artifact_json_schema,
    artifact_validate,
    debater_json_schema,
    mediator_json_schema,
)
from swarm.stages import STAGE_NAMES
from tests.swarm.conftest import valid_artifacts

FEW = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))


def _say_the_unsayable(stage: str, artifact: dict) -> dict:
    # A generated string is no unified diff; the one check no schema states gets a valid value.
    return {**artifact, **({"diff": ""} if "diff" in UNSAYABLE.get(stage, {}) else {})}


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_every_instance_of_an_artifact_schema_validates_once_completed(stage):
    @FEW
    @given(from_schema(artifact_json_schema(stage)))
    def check(instance):
        artifact_validate(stage, artifact_complete(stage, _say_the_unsayable(stage, instance)))

    check()


@pytest.mark.parametrize("stage", ["code", "test_debug"])
def test_every_instance_of_a_mediator_schema_validates_once_completed(stage):
    @FEW
    @given(from_schema(mediator_json_schema(stage)))
    def check(instance):
        answer = answer_validate(MediatorAnswer, instance, what="mediator answer")
        artifact = _say_the_unsayable(stage, answer["artifact"])
        artifact_validate(stage, artifact_complete(stage, artifact))

    check()


@FEW
@given(from_schema(debater_json_schema()))
def test_every_instance_of_the_debater_schema_validates(instance):
    answer_validate(DebaterAnswer, instance, what="answer")


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_model_is_not_asked_for_what_tekton_fills(stage):
    props = artifact_json_schema(stage)["properties"]
    assert not set(TEKTON_FILLED) & set(props)


def test_completion_fills_the_facts_and_keeps_the_choices():
    artifacts = valid_artifacts()
    now = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    report = {**artifacts["test_debug"], "generated_at": "yesterday"}
    report["evidence"] = {"ship": True}  # a model cannot hand in Tekton's measurements
    filled = artifact_complete("test_debug", report, now=now)
    assert filled["generated_at"] == "2026-12-01T09:30:00+00:00" and "evidence" not in filled

    research = artifacts["research"]
    named = research["options"][-1]["name"]
    assert artifact_complete("research", {**research, "chosen": named})["chosen"] == named
    first = research["options"][0]["name"]
    assert artifact_complete("research", {**research, "chosen": "other"})["chosen"] == first

    code = {**artifacts["code"], "files_changed": ["not/in/the/diff.py"]}
    assert artifact_complete("code", code)["files_changed"] == artifacts["code"]["files_changed"]
    with pytest.raises(ArtifactInvalid, match="not a unified diff"):
        artifact_validate("code", artifact_complete("code", {**code, "diff": "@@ not a diff"}))

    backlog = artifacts["plan_update"]
    items = [{**backlog["items"][0], "dependencies": ["NOPE"]}, *backlog["items"][1:]]
    out = artifact_complete("plan_update", {**backlog, "items": items})
    assert out["items"][0]["dependencies"] == []
    assert artifact_complete("plan", "not an object") == "not an object"
