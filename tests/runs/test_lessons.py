from __future__ import annotations

import pytest

from runs.events import event_record
from runs.lessons import HistoryLessons
from tests.factories import ArtifactFactory, RunFactory

pytestmark = pytest.mark.django_db

REPO = "/srv/repos/shop"


def test_lessons_come_from_blocks_retries_and_reviews_of_the_same_repo_newest_first():
    old = RunFactory(repo_path=REPO, with_stages=False)
    event_record(
        run_id=old.pk,
        kind="stage.blocked",
        stage="code",
        payload={"reason": "patch does not apply"},
    )
    ArtifactFactory(
        run=old, stage="review", content={"status": "revise", "issues": ["no tests for refunds"]}
    )
    ArtifactFactory(
        run=RunFactory(repo_path=REPO, with_stages=False),
        stage="review",
        content={"status": "ok", "issues": ["style nit"]},
    )
    newer = RunFactory(repo_path=REPO, with_stages=False)
    event_record(
        run_id=newer.pk, kind="stage.retried", stage="code", payload={"note": "keep the diff small"}
    )
    elsewhere = RunFactory(repo_path="/srv/repos/other", with_stages=False)
    event_record(
        run_id=elsewhere.pk, kind="stage.blocked", stage="code", payload={"reason": "other repo"}
    )
    event_record(
        run_id=old.pk, kind="stage.blocked", stage="plan", payload={"reason": "other stage"}
    )

    lessons = HistoryLessons().lessons_for(goal="g", stage="code", repo_path=REPO)
    texts = [lesson.text for lesson in lessons]
    assert texts == [
        "A person retried code with this note: keep the diff small",
        "An earlier review asked for changes (revise): no tests for refunds",
        "An earlier code stage blocked: patch does not apply",
    ]
    assert lessons[0].source == f"run {newer.pk} / code"


def test_lessons_exclude_the_current_run_are_redacted_and_capped():
    current = RunFactory(repo_path=REPO, with_stages=False)
    event_record(run_id=current.pk, kind="stage.blocked", stage="plan", payload={"reason": "mine"})
    for i in range(8):
        run = RunFactory(repo_path=REPO, with_stages=False)
        event_record(
            run_id=run.pk,
            kind="stage.blocked",
            stage="plan",
            payload={"reason": f"reason {i} mail dev{i}@corp.example"},
        )
    lessons = HistoryLessons(exclude_run_id=current.pk).lessons_for(
        goal="g", stage="plan", repo_path=REPO, limit=3
    )
    assert len(lessons) == 3
    assert [lesson.text.split("reason ")[1][0] for lesson in lessons] == ["7", "6", "5"]
    assert all(
        "@corp.example" not in lesson.text and "[EMAIL#1]" in lesson.text for lesson in lessons
    )
    assert all("mine" not in lesson.text for lesson in lessons)
