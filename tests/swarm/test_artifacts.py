from __future__ import annotations

import json

import pytest

from swarm.artifacts import (
    ARTIFACT_MODELS,
    ArtifactInvalid,
    DebaterAnswer,
    MediatorAnswer,
    answer_validate,
    artifact_json_schema,
    artifact_validate,
    diff_paths,
    mediator_json_schema,
)
from swarm.stages import STAGE_NAMES, UnknownStageError
from tests.swarm.conftest import debater_answer, mediator_answer, valid_artifacts


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_valid_artifacts_validate_and_round_trip(stage):
    data = valid_artifacts()[stage]
    out = artifact_validate(stage, data)
    assert out["offline"] is False
    assert {k: out[k] for k in data} == data
    assert artifact_validate(stage, json.loads(json.dumps(out))) == out


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_every_stage_has_a_json_schema_with_confidence(stage):
    schema = artifact_json_schema(stage)
    assert schema["type"] == "object"
    assert schema["properties"]["confidence"]["minimum"] == 0.0
    assert schema["properties"]["confidence"]["maximum"] == 1.0
    assert "confidence" in schema["required"]
    assert "offline" in schema["properties"]


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_missing_confidence_is_rejected_with_its_path(stage):
    data = {k: v for k, v in valid_artifacts()[stage].items() if k != "confidence"}
    with pytest.raises(
        ArtifactInvalid, match=rf"^{stage} artifact invalid: confidence: Field required"
    ):
        artifact_validate(stage, data)


def test_nested_errors_name_the_full_path():
    data = valid_artifacts()["research"]
    data["options"][0]["pros"] = "small"
    data["confidence"] = 1.2
    with pytest.raises(ArtifactInvalid) as exc:
        artifact_validate("research", data)
    message = str(exc.value)
    assert "options.0.pros: Input should be a valid list" in message
    assert "confidence: Input should be less than or equal to 1" in message
    assert {e["loc"] for e in exc.value.errors} >= {("options", 0, "pros"), ("confidence",)}


@pytest.mark.parametrize(
    ("stage", "change", "problem"),
    [
        ("plan", {"goals": []}, "goals: List should have at least 1 item"),
        ("research", {"options": []}, "options: List should have at least 1 item"),
        ("research", {"chosen": "other"}, "chosen 'other' is not one of the options"),
        ("plan_update", {"items": []}, "items: List should have at least 1 item"),
        ("review", {"status": "maybe"}, "status: Input should be 'ok', 'revise' or 'block'"),
        ("test_debug", {"generated_at": "yesterday"}, "not an ISO 8601 datetime"),
        ("test_debug", {"ship": "true"}, "ship: Input should be a valid boolean"),
        ("threat", {"compliance": []}, "compliance: Input should be a valid dictionary"),
        ("code", {"files_changed": ["other.py"]}, "does not match the diff's files"),
        ("code", {"diff": "just text"}, "diff is not a unified diff"),
        ("code", {"diff": ""}, "diff is empty but files_changed lists files"),
        ("release", {"version": 3}, "version: Input should be a valid string"),
    ],
)
def test_invalid_fields_are_rejected(stage, change, problem):
    data = {**valid_artifacts()[stage], **change}
    with pytest.raises(ArtifactInvalid, match=problem.replace("(", r"\(").replace(")", r"\)")):
        artifact_validate(stage, data)


def test_backlog_dependencies_must_name_items():
    data = valid_artifacts()["plan_update"]
    data["items"][1]["dependencies"] = ["T9"]
    with pytest.raises(ArtifactInvalid, match="dependencies name unknown item_ids: T9"):
        artifact_validate("plan_update", data)


def test_extra_fields_are_ignored_and_defaults_apply():
    data = {**valid_artifacts()["research"], "commentary": "models add these"}
    out = artifact_validate("research", data)
    assert "commentary" not in out
    assert out["freshness_window_days"] == 120


def test_non_object_and_unknown_stage_are_refused():
    with pytest.raises(ArtifactInvalid, match="plan artifact must be a JSON object, got list"):
        artifact_validate("plan", [])
    with pytest.raises(UnknownStageError, match="unknown stage 'deploy'"):
        artifact_validate("deploy", {})


def test_artifact_models_cover_the_nine_stages():
    assert tuple(ARTIFACT_MODELS) == STAGE_NAMES


def test_mediator_schema_embeds_the_stage_artifact_schema():
    schema = mediator_json_schema("research")
    artifact = schema["properties"]["artifact"]
    assert artifact["properties"]["options"]["items"] == {"$ref": "#/$defs/ResearchOption"}
    assert "ResearchOption" in schema["$defs"]
    assert schema["properties"]["status"]["enum"] == ["approve", "revise", "block"]


def test_debater_answer_shape():
    ok = answer_validate(DebaterAnswer, debater_answer(), what="skeptic answer")
    assert ok["vote"] == {"approve": True, "reason": "because"}
    bad = debater_answer(self_confidence=2, score={"correctness": 0.5})
    with pytest.raises(ArtifactInvalid) as exc:
        answer_validate(DebaterAnswer, bad, what="skeptic answer")
    assert str(exc.value).startswith("skeptic answer invalid:")
    assert "score.stack_fit: Field required" in str(exc.value)
    assert "self_confidence: Input should be less than or equal to 1" in str(exc.value)


def test_mediator_answer_shape():
    ok = answer_validate(MediatorAnswer, mediator_answer({"x": 1}), what="mediator answer")
    assert ok["loops_run"] == 2
    with pytest.raises(
        ArtifactInvalid, match="status: Input should be 'approve', 'revise' or 'block'"
    ):
        answer_validate(MediatorAnswer, mediator_answer({}, status="ok"), what="mediator answer")


def test_diff_paths_handles_new_modified_and_deleted_files():
    diff = (
        "--- /dev/null\n+++ b/new.md\n@@ -0,0 +1 @@\n+x\n"
        "--- a/mod.py\n+++ b/mod.py\n@@ -1 +1 @@\n-a\n+b\n"
        "--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
    )
    assert diff_paths(diff) == ["new.md", "mod.py", "gone.txt"]
