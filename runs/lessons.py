"""Lessons from run history: why earlier runs of the same stage and repository blocked, the
notes people gave when they retried, and what review artifacts asked to change.

Implements swarm.context.LessonsProvider from the database: what stages get when
retrieval is off (TEKTON_RETRIEVAL=false); otherwise runs/retrieval.py finds lessons by
meaning in the index.
"""

from __future__ import annotations

from typing import Any

from runs.models import Artifact, RunEvent
from swarm.context import Lesson
from swarm.redact import redact

MAX_LESSON_CHARS = 600


def _clip(text: str, limit: int = MAX_LESSON_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _issue_text(issue: Any) -> str:
    if isinstance(issue, dict):
        parts = [
            str(v)
            for k, v in issue.items()
            if k in ("title", "detail", "description", "text", "issue", "fix") and v
        ]
        return "; ".join(parts) or ", ".join(f"{k}: {v}" for k, v in issue.items())
    return str(issue)


class HistoryLessons:
    """LessonsProvider over earlier runs. `exclude_run_id` leaves the current run out;
    `run_ids` limits it to the runs a user may see (None: every run)."""

    def __init__(
        self, *, exclude_run_id: int | None = None, run_ids: list[int] | None = None, scan: int = 50
    ) -> None:
        self.exclude_run_id = exclude_run_id
        self.run_ids = run_ids
        self.scan = scan  # rows read per source, so a long history stays cheap

    def lessons_for(self, *, goal: str, stage: str, repo_path: str, limit: int = 5) -> list[Lesson]:
        """Newest first, redacted, at most `limit` distinct lessons."""
        found: list[tuple[Any, Lesson]] = []
        events = (
            RunEvent.objects.filter(
                run__repo_path=repo_path, stage=stage, kind__in=("stage.blocked", "stage.retried")
            )
            .exclude(run_id=self.exclude_run_id)
            .order_by("-created_at", "-id")
        )
        if self.run_ids is not None:
            events = events.filter(run_id__in=self.run_ids)
        for event in events[: self.scan]:
            payload = event.payload or {}
            if event.kind == "stage.blocked" and payload.get("reason"):
                text = f"An earlier {stage} stage blocked: {payload['reason']}"
                score = 1.0
            elif event.kind == "stage.retried" and payload.get("note"):
                text = f"A person retried {stage} with this note: {payload['note']}"
                score = 0.9
            else:
                continue
            found.append(
                (
                    event.created_at,
                    Lesson(text=text, source=f"run {event.run_id} / {stage}", score=score),
                )
            )

        reviews = (
            Artifact.objects.filter(
                run__repo_path=repo_path,
                stage="review",
                kind=Artifact.Kind.JSON,
                content__status__in=["revise", "block"],
            )
            .exclude(run_id=self.exclude_run_id)
            .order_by("-created_at", "-id")
        )
        if self.run_ids is not None:
            reviews = reviews.filter(run_id__in=self.run_ids)
        for artifact in reviews[: self.scan]:
            issues = (artifact.content or {}).get("issues") or []
            if not issues:
                continue
            listed = " | ".join(_issue_text(i) for i in issues[:5])
            text = (
                f"An earlier review asked for changes ({artifact.content.get('status')}): {listed}"
            )
            found.append(
                (
                    artifact.created_at,
                    Lesson(text=text, source=f"run {artifact.run_id} / review", score=0.8),
                )
            )

        found.sort(key=lambda pair: pair[0], reverse=True)
        lessons: list[Lesson] = []
        seen: set[str] = set()
        for _, lesson in found:
            text = _clip(redact(lesson.text))
            if text in seen:
                continue
            seen.add(text)
            lessons.append(Lesson(text=text, source=lesson.source, score=lesson.score))
            if len(lessons) >= limit:
                break
        return lessons
