"""The lesson store: what earlier runs learned, found again by meaning.

A lesson is written when its event happens (a stage blocked and how a person resolved it,
what review asked to change, newly failing tests and what fixed them, a person's retry
note), redacted, and searched by goal and stage, only among the runs a user may see.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from swarm.context import Lesson
from swarm.redact import redact
from swarm.retrieval.embedders import Embedder
from swarm.retrieval.errors import RetrievalError, RetrievalUnavailable
from swarm.retrieval.store import MAX_IN_TERMS, MODES, Store, in_list, quote
from swarm.retrieval.text import clip_bytes, has_terms, lexical, short_hash
from swarm.stages import STAGE_NAMES

logger = logging.getLogger("tekton.swarm.retrieval.lessons")

LESSON_KINDS = ("blocked", "review", "test_fix", "retry_note")
MAX_LESSON_CHARS = 4000
_FIELDS = ("repo", "run_id", "stage", "kind", "outcome", "created_at", "text")


@dataclass(frozen=True)
class LessonHit:
    id: str
    text: str
    repo: str
    run_id: int
    stage: str
    kind: str
    outcome: str
    created_at: float
    score: float
    source: str  # how it was found: "hybrid", "dense" or "bm25"

    def as_lesson(self) -> Lesson:
        """The engine's Lesson, as StageInput.lessons carries it."""
        return Lesson(text=self.text, source=f"run {self.run_id} / {self.stage}", score=self.score)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LessonSearch:
    hits: list[LessonHit] = field(default_factory=list)
    warning: str | None = None


def lesson_add(
    store: Store,
    embedder: Embedder,
    *,
    repo: str,
    text: str,
    run_id: int,
    stage: str,
    kind: str,
    outcome: str = "",
    created_at: float | None = None,
    key: str | None = None,
) -> str:
    """Store a lesson (redacted, at most 4,000 characters) and return its id. `key` names
    the event it comes from ("event:123"), making a second write of the same event a
    no-op overwrite. Raises RetrievalError for bad fields, RetrievalUnavailable when it
    could not be stored."""
    if stage not in STAGE_NAMES:
        raise RetrievalError(f"unknown stage {stage!r}")
    if kind not in LESSON_KINDS:
        raise RetrievalError(f"unknown lesson kind {kind!r} ({', '.join(LESSON_KINDS)})")
    if not isinstance(text, str) or not text.strip():
        raise RetrievalError("a lesson needs text")
    if not repo or len(repo.encode("utf-8")) > 2048:
        raise RetrievalError("a repository name must be 1 to 2048 bytes")
    clean = clip_bytes(redact(" ".join(text.split()))[:MAX_LESSON_CHARS], 60000)
    lesson_id = short_hash(store.prefix, repo, key, n=32) if key else uuid.uuid4().hex
    store.ensure(embedder)
    row = {
        "id": lesson_id, "repo": repo, "run_id": int(run_id), "stage": stage, "kind": kind,
        "outcome": clip_bytes(redact(outcome), 256), "created_at": time.time() if created_at is None else float(created_at),
        "text": clean, "lexical": lexical(clean, extra=f"{stage} {kind}"),
        "dense": embedder.embed([clean])[0],
    }  # fmt: skip
    store.upsert("lessons", [row])
    return lesson_id


def lesson_search(
    store: Store,
    embedder: Embedder,
    *,
    repo: str,
    query: str,
    stage: str | None = None,
    run_ids: Collection[int] | None = None,
    exclude_run_id: int | None = None,
    k: int = 5,
    mode: str = "hybrid",
) -> LessonSearch:
    """The `k` lessons of `repo` closest to `query` (the goal), of `stage` when given,
    among runs `run_ids` (None: every run, for staff; empty: none). Never raises
    RetrievalUnavailable: it degrades to no hits and a warning."""
    if mode not in MODES:
        raise RetrievalError(f"unknown search mode {mode!r} ({', '.join(MODES)})")
    if not isinstance(query, str) or not query.strip():
        raise RetrievalError("the search query is empty")
    if run_ids is not None and not run_ids:
        return LessonSearch()
    expr = f"repo == {quote(repo)}"
    if stage is not None:
        expr += f" and stage == {quote(stage)}"
    if exclude_run_id is not None:
        expr += f" and run_id != {int(exclude_run_id)}"
    visible = None if run_ids is None else {int(r) for r in run_ids}
    if visible is not None and len(visible) <= MAX_IN_TERMS:
        expr += f" and {in_list('run_id', sorted(visible))}"
    query = query.strip()
    try:
        store.ensure(embedder)
        dense = embedder.embed([query])[0] if mode != "bm25" else None
        found = store.search(
            "lessons", mode=mode, dense=dense,
            lexical=lexical(query) if has_terms(query) else None, expr=expr,
            limit=k if visible is None or len(visible) <= MAX_IN_TERMS else k * 10, fields=_FIELDS,
        )  # fmt: skip
    except RetrievalUnavailable as exc:
        logger.warning("lesson search degraded: %s", exc)
        return LessonSearch(warning=str(exc))
    hits = [
        LessonHit(
            id=f.id,
            text=f.entity["text"],
            repo=f.entity["repo"],
            run_id=int(f.entity["run_id"]),
            stage=f.entity["stage"],
            kind=f.entity["kind"],
            outcome=f.entity["outcome"],
            created_at=float(f.entity["created_at"]),
            score=f.score,
            source=mode,
        )  # fmt: skip
        for f in found
        if visible is None or int(f.entity["run_id"]) in visible
    ]
    return LessonSearch(hits=hits[:k])


class MilvusLessons:
    """swarm.context.LessonsProvider over the lesson store, bound to what one user may
    see (`visible_run_ids`, None for staff) and leaving the current run out. A degraded
    search returns no lessons and hands its warning to `on_warning`."""

    def __init__(
        self,
        search: Callable[..., LessonSearch],
        *,
        visible_run_ids: Collection[int] | None,
        exclude_run_id: int | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self._search = search
        self.visible_run_ids = visible_run_ids
        self.exclude_run_id = exclude_run_id
        self.on_warning = on_warning
        self.retrieved: list[LessonHit] = []  # what the last call returned, to record it

    def lessons_for(self, *, goal: str, stage: str, repo_path: str, limit: int = 5) -> list[Lesson]:
        result = self._search(
            repo=repo_path, query=goal, stage=stage, run_ids=self.visible_run_ids,
            exclude_run_id=self.exclude_run_id, k=limit,
        )  # fmt: skip
        if result.warning and self.on_warning is not None:
            self.on_warning(result.warning)
        self.retrieved = list(result.hits)
        return [hit.as_lesson() for hit in result.hits]
