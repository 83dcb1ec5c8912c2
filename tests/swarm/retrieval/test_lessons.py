"""The lesson store against a real Milvus Lite."""

from __future__ import annotations

import pytest

from swarm.context import Lesson
from swarm.retrieval import RetrievalError

LESSONS = [
    # (run, stage, kind, text)
    (1, "review", "review", "Review asked to add tests for the login rate limiter"),
    (2, "review", "review", "Review wanted the migration split into two steps"),
    (3, "test_debug", "test_fix", "test_checkout failed on a timezone; fixed by using UTC"),
    (4, "code", "blocked", "Code stage blocked: the diff did not apply; a person rebased it"),
    (5, "review", "retry_note", "Retried review with a note: cover the rate limiter error path"),
]


@pytest.fixture
def stored(retrieval):
    for run_id, stage, kind, text in LESSONS:
        retrieval.lesson_add(
            repo="/srv/app", text=text, run_id=run_id, stage=stage, kind=kind, created_at=run_id
        )
    retrieval.lesson_add(
        repo="/srv/other", text="Review asked to add tests for the rate limiter", run_id=9,
        stage="review", kind="review",
    )  # fmt: skip
    return retrieval


def test_lessons_are_found_by_meaning_within_repository_and_stage(stored):
    result = stored.lesson_search(repo="/srv/app", query="rate limiting for login", stage="review")
    assert result.warning is None
    runs = [h.run_id for h in result.hits]
    assert set(runs[:2]) == {1, 5} and 9 not in runs
    assert all(h.stage == "review" and h.repo == "/srv/app" for h in result.hits)
    top = result.hits[0]
    assert top.kind in ("review", "retry_note") and top.created_at in (1.0, 5.0) and top.score > 0


def test_lessons_follow_visibility_and_leave_the_current_run_out(stored):
    visible = stored.lesson_search(repo="/srv/app", query="rate limiter", run_ids={2, 3, 5})
    assert {h.run_id for h in visible.hits} <= {2, 3, 5} and 5 in {h.run_id for h in visible.hits}
    assert stored.lesson_search(repo="/srv/app", query="rate limiter", run_ids=set()).hits == []
    others = stored.lesson_search(repo="/srv/app", query="rate limiter", exclude_run_id=5)
    assert 5 not in {h.run_id for h in others.hits} and others.hits


def test_a_lesson_is_redacted_and_an_event_written_twice_is_stored_once(retrieval):
    for _ in range(2):
        lesson_id = retrieval.lesson_add(
            repo="/srv/app", key="event:42", run_id=7, stage="code", kind="blocked",
            text="Blocked: the stage printed the key sk-ant-api03-abcdefghijklmnop to the log",
        )  # fmt: skip
    (hit,) = retrieval.lesson_search(repo="/srv/app", query="key printed to the log").hits
    assert hit.id == lesson_id
    assert "sk-ant" not in hit.text and "[API_KEY#1]" in hit.text
    assert retrieval.store.count("lessons", 'id != ""') == 1


def test_the_provider_gives_the_engine_its_lessons(stored):
    warnings: list[str] = []
    provider = stored.lessons_provider(
        visible_run_ids=None, exclude_run_id=1, on_warning=warnings.append
    )
    lessons = provider.lessons_for(
        goal="Add rate limiting", stage="review", repo_path="/srv/app", limit=2
    )
    assert all(isinstance(lesson, Lesson) for lesson in lessons) and len(lessons) == 2
    assert lessons[0].source == "run 5 / review"
    assert [h.run_id for h in provider.retrieved][0] == 5 and warnings == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"stage": "lunch"}, "unknown stage"),
        ({"kind": "gossip"}, "unknown lesson kind"),
        ({"text": "  "}, "needs text"),
    ],
)
def test_a_bad_lesson_is_refused(retrieval, fields, message):
    lesson = {"repo": "r", "text": "t", "run_id": 1, "stage": "code", "kind": "blocked", **fields}
    with pytest.raises(RetrievalError, match=message):
        retrieval.lesson_add(**lesson)
