"""Retrieval for this installation (issue 10): the Retrieval built from settings, the index
of a run's base commit, lessons written when their events happen, and what each stage is
given (lessons by goal and stage, repository chunks for the code-facing stages).

Nothing here may stop a run: when Milvus or the embedding model is out of reach, a stage
goes on without chunks or lessons and the run gets one `run.warning` event saying so.
With TEKTON_RETRIEVAL=false there is no index and lessons come from run history.
When this work runs is runs/retrieval_dispatch.py; indexing and searching on request
(CLI, API, pages) is runs/retrieval_search.py.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from runs import events
from runs.index_status import index_claim, index_finished, index_progress_recorder
from runs.lessons import HistoryLessons
from runs.models import Artifact, Run, RunEvent, TestRunRecord
from runs.selectors import runs_visible_to
from swarm.context import Lesson
from swarm.redact import redact
from swarm.retrieval import (
    CodeSearch,
    EmbeddingConfig,
    Retrieval,
    RetrievalConfig,
    RetrievalError,
    RetrievalUnavailable,
    retrieval_for,
)

logger = logging.getLogger("tekton.runs.retrieval")

CODE_STAGES = ("code", "review", "threat", "test_debug")
MAX_BACKLOG_QUERIES = 7  # with the goal: the engine fuses at most 8 queries


# --- the installation's Retrieval ------------------------------------------------------------


def retrieval_config() -> RetrievalConfig:
    """The settings as a RetrievalConfig (the token stays out of its repr). Raises
    RetrievalError for a configuration the engine refuses."""
    return RetrievalConfig(
        namespace=settings.TEKTON_MILVUS_NAMESPACE,
        data_dir=settings.TEKTON_MILVUS_DIR,
        milvus_uri=settings.MILVUS_URI,
        milvus_token=settings.MILVUS_TOKEN,
        timeout_s=settings.TEKTON_MILVUS_TIMEOUT_S,
        embedding=EmbeddingConfig(
            backend=settings.TEKTON_EMBEDDING_BACKEND,
            model=settings.TEKTON_EMBEDDING_MODEL,
            base_url=settings.TEKTON_EMBEDDING_BASE_URL,
            key_env=settings.TEKTON_EMBEDDING_KEY_ENV,
            dimensions=settings.TEKTON_EMBEDDING_DIMENSIONS,
        ),
    )


def retrieval_get() -> Retrieval | None:
    """The process's Retrieval, or None when TEKTON_RETRIEVAL is false. Cheap: nothing
    connects until a method needs it."""
    if not settings.TEKTON_RETRIEVAL:
        return None
    return retrieval_for(retrieval_config())


def run_warning_record(*, run_id: int, message: str, source: str = "retrieval") -> None:
    """A `run.warning` event, once per run for the same message (every stage of a run
    meeting the same down server says it once)."""
    message = redact(" ".join(str(message).split()))[:1000]
    with transaction.atomic():
        seen = RunEvent.objects.filter(
            run_id=run_id, kind="run.warning", payload__message=message
        ).exists()
        if not seen:
            events.event_record(
                run_id=run_id, kind="run.warning", payload={"source": source, "message": message}
            )


def _warn(run_id: int, message: str) -> None:
    try:
        run_warning_record(run_id=run_id, message=message)
    except Run.DoesNotExist:
        pass


# --- indexing the run's base commit ----------------------------------------------------------

_indexing: set[tuple[str, str]] = set()
_indexing_lock = threading.Lock()


def run_index_ensure(run_id: int) -> None:
    """Index run `run_id`'s base commit when it is not indexed yet. The run gets a warning
    that its stages go on without repository chunks meanwhile, or that the index is out of
    reach. Idempotent (indexing is incremental by blob); never raises for retrieval."""
    run = Run.objects.filter(pk=run_id).only("pk", "repo_path", "base_commit").first()
    retrieval = retrieval_get()
    if run is None or retrieval is None or not run.base_commit:
        return
    key = (run.repo_path, run.base_commit)
    try:
        if retrieval.is_indexed(repo=run.repo_path, commit=run.base_commit):
            return
    except RetrievalUnavailable as exc:
        _warn(
            run_id,
            f"the retrieval index is unavailable; stages go on without repository chunks and lessons: {exc}",
        )
        return
    _warn(
        run_id,
        f"commit {run.base_commit[:12]} of {run.repo_path} is not indexed yet; it is being "
        "indexed now and stages go on without repository chunks until it is",
    )
    with _indexing_lock:
        if key in _indexing:
            return  # another thread of this process is on it
        _indexing.add(key)
    report = None
    claimed = False
    try:
        claimed = index_claim(repo=run.repo_path, commit=run.base_commit)
        if not claimed:
            return  # another worker is on it
        report = retrieval.index_commit(
            repo=run.repo_path,
            path=run.repo_path,
            commit=run.base_commit,
            progress=index_progress_recorder(repo=run.repo_path, commit=run.base_commit),
        )
        logger.info("run %s: indexed %s", run_id, report)
    except (RetrievalUnavailable, RetrievalError) as exc:
        _warn(
            run_id,
            f"indexing commit {run.base_commit[:12]} failed; stages go on without repository chunks: {exc}",
        )
    finally:
        with _indexing_lock:
            _indexing.discard(key)
        if claimed:
            index_finished(repo=run.repo_path, commit=run.base_commit, report=report)


# --- lessons, written when their events happen -----------------------------------------------


def _blocked_event(run_id: int, stage: str, before_seq: int) -> RunEvent | None:
    return (
        RunEvent.objects.filter(
            run_id=run_id, stage=stage, kind="stage.blocked", seq__lt=before_seq
        )
        .order_by("-seq")
        .first()
    )


def _review_text(content: dict[str, Any]) -> str:
    from runs.lessons import _issue_text

    issues = content.get("issues") or []
    listed = " | ".join(_issue_text(i) for i in issues[:8])
    return f"Review asked for changes ({content.get('status')}): {listed}" if listed else ""


def lesson_of_event(event: RunEvent) -> dict[str, Any] | None:
    """The lesson an event teaches ({text, stage, kind, outcome, key}), or None. A blocked
    stage's lesson is written again, under the same key, once a person resolved it."""
    payload = event.payload or {}
    stage = event.stage
    if event.kind == "stage.blocked" and payload.get("reason"):
        return {
            "text": f"Stage {stage} blocked: {payload['reason']}",
            "stage": stage, "kind": "blocked", "outcome": "blocked", "key": f"event:{event.pk}",
        }  # fmt: skip
    if event.kind in ("stage.approved", "stage.retried") and not payload.get("automatic"):
        blocked = _blocked_event(event.run_id, stage, event.seq)
        why = (blocked.payload or {}).get("reason", "") if blocked else ""
        note = str(payload.get("note") or "").strip()
        if event.kind == "stage.approved":
            text, kind, outcome = (
                f"Stage {stage} blocked: {why}. A person approved it anyway.",
                "blocked",
                "approved",
            )
        elif note:
            text = f"Stage {stage} {'blocked: ' + why + '. ' if why else 'failed. '}A person retried it with this note: {note}"
            kind, outcome = "retry_note", "retried"
        else:
            return None
        key = f"event:{blocked.pk}" if blocked and kind == "blocked" else f"event:{event.pk}"
        return {"text": text, "stage": stage, "kind": kind, "outcome": outcome, "key": key}
    if event.kind == "run.cancelled" and str(payload.get("reason", "")).startswith("aborted"):
        blocked = (
            RunEvent.objects.filter(run_id=event.run_id, kind="stage.blocked", seq__lt=event.seq)
            .order_by("-seq")
            .first()
        )
        if blocked is None:
            return None
        why = (blocked.payload or {}).get("reason", "")
        return {
            "text": f"Stage {blocked.stage} blocked: {why}. A person aborted the run.",
            "stage": blocked.stage, "kind": "blocked", "outcome": "aborted", "key": f"event:{blocked.pk}",
        }  # fmt: skip
    if event.kind in ("stage.finished", "stage.blocked") and stage in ("review", "test_debug"):
        content = (
            Artifact.objects.filter(run_id=event.run_id, stage=stage, kind=Artifact.Kind.JSON)
            .values_list("content", flat=True)
            .first()
        )
        if not isinstance(content, dict):
            return None
        if stage == "review" and content.get("status") in ("revise", "block"):
            text = _review_text(content)
            kind = "review"
        elif stage == "test_debug" and (content.get("evidence") or {}).get("newly_failing"):
            failing = [str(t) for t in content["evidence"]["newly_failing"][:10]]
            text = f"The change made these tests newly fail: {', '.join(failing)}"
            kind = "test_fix"
        elif stage == "test_debug" and event.kind == "stage.finished":
            return _tests_fixed_lesson(event)
        else:
            return None
        if text:
            return {
                "text": text,
                "stage": stage,
                "kind": kind,
                "outcome": str(content.get("status") or ""),
                "key": f"event:{event.pk}",
            }
    return None


def _outcomes(record: dict[str, Any]) -> dict[str, str]:
    return (record["data"] or {}).get("outcomes") or {}


def _tests_fixed_lesson(event: RunEvent) -> dict[str, Any] | None:
    """What fixed the tests an earlier attempt of this run's change newly failed: the
    tests that failed on an earlier branch run (and not on the base) and pass on the last
    one, with the retry notes people gave since and the files the change now touches."""
    bad = ("failed", "error")
    records = list(
        TestRunRecord.objects.filter(run_id=event.run_id, kind__in=("base", "branch"))
        .order_by("id")
        .values("id", "kind", "data", "created_at")
    )
    base = next((r for r in reversed(records) if r["kind"] == "base"), None)
    branches = [r for r in records if r["kind"] == "branch"]
    if base is None or len(branches) < 2:
        return None
    on_base, now = _outcomes(base), _outcomes(branches[-1])
    broke_at = None
    fixed: set[str] = set()
    for earlier in branches[:-1]:
        newly = {t for t, o in _outcomes(earlier).items() if o in bad and on_base.get(t) not in bad}
        gone = {t for t in newly if now.get(t) == "passed"}
        if gone and broke_at is None:
            broke_at = earlier["created_at"]
        fixed |= gone
    if not fixed:
        return None
    notes = [
        str((payload or {}).get("note") or "").strip()
        for payload in RunEvent.objects.filter(
            run_id=event.run_id, kind="stage.retried", created_at__gte=broke_at
        )
        .order_by("seq")
        .values_list("payload", flat=True)
        if not (payload or {}).get("automatic")
    ]
    notes = [n for n in notes if n]
    code = (
        Artifact.objects.filter(run_id=event.run_id, stage="code", kind=Artifact.Kind.JSON)
        .values_list("content", flat=True)
        .first()
    )
    files = [str(f) for f in ((code or {}).get("files_changed") or [])[:8]]
    how = f"a person's retry note: {' / '.join(notes)}" if notes else "the change was revised"
    text = (
        f"Tests {', '.join(sorted(fixed)[:10])} newly failed on an earlier attempt of the "
        f"change and passed after {how}"
        + (f"; the change that passed touches {', '.join(files)}" if files else "")
    )
    return {
        "text": text,
        "stage": "test_debug",
        "kind": "test_fix",
        "outcome": "fixed",
        "key": f"event:{event.pk}",
    }


def lesson_write(event_id: int) -> str | None:
    """Store the lesson of event `event_id` (redacted) and return its id; None when the
    event teaches nothing, is gone, or the index is out of reach (a warning event then).
    Safe to run twice: the event is the lesson's key."""
    event = RunEvent.objects.filter(pk=event_id).select_related("run").first()
    retrieval = retrieval_get()
    if event is None or retrieval is None:
        return None
    lesson = lesson_of_event(event)
    if lesson is None:
        return None
    try:
        return retrieval.lesson_add(
            repo=event.run.repo_path,
            run_id=event.run_id,
            created_at=event.created_at.timestamp(),
            **lesson,
        )
    except RetrievalUnavailable as exc:
        _warn(event.run_id, f"a lesson of stage {lesson['stage']} was not stored: {exc}")
    except RetrievalError as exc:
        logger.warning("lesson of event %s refused: %s", event_id, exc)
    return None


# --- what a stage is given ---------------------------------------------------------------------


def visible_run_ids(run: Run) -> list[int] | None:
    """The runs of the repository whose lessons `run`'s stages may see: those its owner may
    see (None: every run, for staff and the command line)."""
    owner = run.owner
    if owner is None or owner.is_staff or owner.is_superuser:
        return None
    return list(runs_visible_to(owner).filter(repo_path=run.repo_path).values_list("pk", flat=True))


@dataclass
class StageContext:
    """What retrieval gave one stage: the lessons, the repository chunks (None for a stage
    that gets none), and why either is missing."""

    lessons: list[Lesson] = field(default_factory=list)
    lesson_rows: list[dict[str, Any]] = field(default_factory=list)
    code: CodeSearch | None = None
    warnings: list[str] = field(default_factory=list)
    source: str = "index"  # index | history (retrieval off)

    @property
    def code_text(self) -> str:
        return self.code.render() if self.code and self.code.hits else ""

    def payload(self) -> dict[str, Any]:
        """The `stage.context` event: locations and scores, not the code itself."""
        chunks = [
            {"path": h.path, "start_line": h.start_line, "end_line": h.end_line, "symbol": h.symbol, "score": round(h.score, 4)}
            for h in (self.code.hits if self.code else [])
        ]  # fmt: skip
        return {
            "source": self.source,
            "commit": self.code.commit if self.code else None,
            "chunks": chunks,
            "tokens": self.code.tokens if self.code else 0,
            "lessons": self.lesson_rows,
            "warnings": self.warnings,
        }


def _backlog_queries(prior: dict[str, dict[str, Any]]) -> list[str]:
    queries: list[str] = []
    for name in ("plan_update", "plan"):
        items = (prior.get(name) or {}).get("items")
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict):
                    text = " ".join(
                        str(item.get(k) or "") for k in ("title", "description", "detail")
                    ).strip()
                    if text:
                        queries.append(text[:2000])
            break
    return queries[:MAX_BACKLOG_QUERIES]


def stage_context_build(run: Run, stage: str, prior: dict[str, dict[str, Any]]) -> StageContext:
    """Lessons by the goal and the stage among runs the owner may see, and for the
    code-facing stages the base commit's chunks nearest the goal and the backlog within
    TEKTON_RETRIEVAL_TOKEN_BUDGET. Reads only; never raises for retrieval."""
    try:
        return _stage_context(run, stage, prior)
    except (
        Exception
    ) as exc:  # the index is a helper: a bug or a surprise there is no reason to fail a stage
        logger.exception("run %s: retrieval for stage %s failed", run.pk, stage)
        return StageContext(warnings=[f"retrieval failed inside Tekton ({type(exc).__name__})"])


def _stage_context(run: Run, stage: str, prior: dict[str, dict[str, Any]]) -> StageContext:
    limit = settings.TEKTON_RETRIEVAL_LESSONS
    retrieval = retrieval_get()
    visible = visible_run_ids(run)
    if retrieval is None:
        history = HistoryLessons(exclude_run_id=run.pk, run_ids=visible)
        lessons = history.lessons_for(
            goal=run.goal, stage=stage, repo_path=run.repo_path, limit=limit
        )
        rows = [
            {"text": x.text, "source": x.source, "score": x.score, "kind": "history"}
            for x in lessons
        ]
        return StageContext(lessons=lessons, lesson_rows=rows, source="history")
    ctx = StageContext()
    provider = retrieval.lessons_provider(
        visible_run_ids=visible, exclude_run_id=run.pk, on_warning=ctx.warnings.append
    )
    try:
        ctx.lessons = provider.lessons_for(
            goal=run.goal, stage=stage, repo_path=run.repo_path, limit=limit
        )
    except RetrievalError as exc:
        ctx.warnings.append(str(exc))
    ctx.lesson_rows = [
        {"text": h.text, "source": f"run {h.run_id} / {h.stage}", "run_id": h.run_id, "kind": h.kind, "outcome": h.outcome, "score": round(h.score, 4)}
        for h in provider.retrieved
    ]  # fmt: skip
    if stage in CODE_STAGES and run.base_commit:
        try:
            ctx.code = retrieval.code_context(
                repo=run.repo_path, commit=run.base_commit, queries=[run.goal, *_backlog_queries(prior)],
                token_budget=settings.TEKTON_RETRIEVAL_TOKEN_BUDGET,
            )  # fmt: skip
        except RetrievalError as exc:
            ctx.code = CodeSearch(warning=str(exc))
        if ctx.code.warning:
            ctx.warnings.append(ctx.code.warning)
    ctx.warnings = list(dict.fromkeys(ctx.warnings))
    return ctx


def stage_context_record(*, run_id: int, stage: str, context: StageContext) -> None:
    """Record what `stage` was given (`stage.context`) and turn each degradation into a
    run warning. Called before the engine starts, outside any transaction."""
    if context.source == "history" and not context.lessons:
        return  # retrieval off and nothing learned: nothing to show
    try:
        events.event_record(
            run_id=run_id, kind="stage.context", stage=stage, payload=context.payload()
        )
    except Run.DoesNotExist:
        return
    for warning in context.warnings:
        _warn(run_id, f"stage {stage} went on without some retrieved context: {warning}")


def code_searcher(run: Run):
    """The `search_code` tool's index half for a run's stages: query -> hits over the
    run's base commit, or None when retrieval is off. swarm.tools calls it; it never
    raises for retrieval (a degraded search answers no hits and a warning)."""
    retrieval = retrieval_get()
    if retrieval is None or not run.base_commit:
        return None
    repo, commit = run.repo_path, run.base_commit

    def search(query: str, k: int = 8) -> CodeSearch:
        return retrieval.search_code(repo=repo, commit=commit, query=query, k=k)

    return search
