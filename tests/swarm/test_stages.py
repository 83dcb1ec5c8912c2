from __future__ import annotations

import pytest

from swarm.stages import (
    PATCH_FILE,
    ROLES,
    STAGE_NAMES,
    STAGES,
    UnknownStageError,
    stage_ancestors,
    stage_dependencies,
    stage_get,
    stage_range,
)


def test_nine_stages_in_order_with_their_files():
    assert len(STAGE_NAMES) == 9
    assert [STAGES[n].index for n in STAGE_NAMES] == list(range(1, 10))
    assert stage_get("plan_update").artifact_file == "backlog.json"
    assert stage_get("test_debug").artifact_file == "test_report.json"
    assert PATCH_FILE == "diff.patch"


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_every_stage_has_a_brief_for_every_role(name):
    spec = stage_get(name)
    assert set(spec.briefs) == set(ROLES)
    assert all(brief.strip() for brief in spec.briefs.values())
    assert spec.produces.strip()


def test_unknown_stage_lists_the_valid_ones():
    with pytest.raises(
        UnknownStageError, match="unknown stage 'deploy'; stages are: plan, research"
    ):
        stage_get("deploy")


def test_stage_range_is_inclusive_and_ordered():
    assert stage_range("code", "threat") == ["code", "review", "threat"]
    assert stage_range() == list(STAGE_NAMES)
    with pytest.raises(ValueError, match="--to 'plan' comes before --from 'code'"):
        stage_range("code", "plan")


def test_dependencies_only_count_selected_stages():
    selected = stage_range("review", "release")
    assert stage_dependencies("review", selected) == ()
    assert stage_dependencies("integrate", selected) == ("review", "threat")
    assert stage_dependencies("threat", stage_range()) == ("code",)


def test_ancestors_are_what_a_stage_depends_on_directly_or_through_others():
    assert stage_ancestors("plan") == ()
    assert stage_ancestors("code") == ("plan", "research", "plan_update")
    assert stage_ancestors("threat") == ("plan", "research", "plan_update", "code")
    assert "review" not in stage_ancestors("threat") and "threat" not in stage_ancestors("review")
    assert stage_ancestors("release")[-3:] == ("threat", "integrate", "test_debug")


def test_sequential_schedule_chains_every_stage_to_the_one_before():
    selected = stage_range("code", "release")
    assert stage_dependencies("threat", selected) == ("code",)
    assert stage_dependencies("threat", selected, sequential=True) == ("review",)
    assert stage_dependencies("integrate", selected, sequential=True) == ("threat",)
    assert stage_dependencies("code", selected, sequential=True) == ()
