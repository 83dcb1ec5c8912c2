"""Indexing and searching on request (`tekton index`, `tekton search`, /api/search/, the
Repositories page): the repository checked, the index asked, the answer shaped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from runs.index_status import index_finished, index_progress_recorder
from runs.retrieval import retrieval_get
from runs.selectors import runs_visible_to
from swarm.retrieval import IndexReport, Retrieval, RetrievalError, RetrievalUnavailable
from tekton_site.errors import FieldError, ServiceUnavailable, StateError
from tekton_site.paths import path_typed, repo_check


def _retrieval_or_refuse() -> Retrieval:
    retrieval = retrieval_get()
    if retrieval is None:
        raise StateError("retrieval is off here (TEKTON_RETRIEVAL=false)")
    return retrieval


def repo_path_allowed(repo_path: str | Path, *, field_name: str = "repo") -> str:
    """The repository's absolute path when it is inside TEKTON_REPO_ROOTS (the index's
    name for it); it need not exist on this host. Raises FieldError."""
    if not str(repo_path or "").strip():
        raise FieldError(field_name, "a repository path is required")
    path = path_typed(repo_path, field=field_name, what="repository")
    roots = [Path(r).expanduser().resolve() for r in settings.TEKTON_REPO_ROOTS]
    if not any(path == root or path.is_relative_to(root) for root in roots):
        listed = ", ".join(str(r) for r in roots) or "(none configured)"
        raise FieldError(
            field_name,
            f"repository {path} is outside the allowed roots ({listed}); set TEKTON_REPO_ROOTS to allow it",
        )
    return str(path)


def repo_index(
    *, repo_path: str | Path, commit: str = "HEAD", progress=None, force: bool = False
) -> IndexReport:
    """Index `commit` of the repository at `repo_path` (incremental by blob; `force`
    re-embeds). `progress(done, total, path)`. Raises FieldError (not a repository,
    outside the roots, unknown commit), StateError (retrieval off), ServiceUnavailable
    (Milvus or the embedding model out of reach)."""
    path = repo_check(repo_path, field_name="repo")
    retrieval = _retrieval_or_refuse()
    label = commit or "HEAD"
    recorder = index_progress_recorder(repo=str(path), commit=label)

    def both(done: int, total: int, file_path: str) -> None:
        recorder(done, total, file_path)
        if progress is not None:
            progress(done, total, file_path)

    report = None
    try:
        report = retrieval.index_commit(
            repo=str(path), path=path, commit=label, progress=both, force=force
        )
        return report
    except RetrievalError as exc:
        raise FieldError("commit" if commit != "HEAD" else "repo", str(exc)) from None
    except RetrievalUnavailable as exc:
        raise ServiceUnavailable("milvus", str(exc)) from None
    finally:
        index_finished(repo=str(path), commit=label, report=report)


def repo_search(
    *, user, repo_path: str | Path, query: str, k: int = 10, commit: str | None = None
) -> dict[str, Any]:
    """Chunks of the repository's `commit` (None: the newest indexed) best matching
    `query`, with path, line range and score, and the lessons of runs `user` may see
    (None: the command line, every run). A degraded index answers no hits and a
    `warning`, as does retrieval turned off. Raises FieldError for a bad query or
    repository."""
    repo = repo_path_allowed(repo_path)
    query = (query or "").strip()
    if not query:
        raise FieldError("q", "the search query is empty")
    if len(query) > 2000:
        raise FieldError("q", f"the query is {len(query):,} characters; the limit is 2,000")
    retrieval = retrieval_get()
    if retrieval is None:
        return {"query": query, "repo": repo, "commit": None, "chunks": [], "lessons": [],
                "warning": "retrieval is off here (TEKTON_RETRIEVAL=false)"}  # fmt: skip
    try:
        code = retrieval.search_code(repo=repo, commit=commit or None, query=query, k=k)
    except RetrievalError as exc:
        raise FieldError("q", str(exc)) from None
    visible = None
    if user is not None and not (user.is_staff or user.is_superuser):
        visible = list(runs_visible_to(user).filter(repo_path=repo).values_list("pk", flat=True))
    try:
        lessons = retrieval.lesson_search(repo=repo, query=query, run_ids=visible, k=5)
    except RetrievalError as exc:
        raise FieldError("q", str(exc)) from None
    warnings = [w for w in (code.warning, lessons.warning) if w]
    return {
        "query": query,
        "repo": repo,
        "commit": code.commit,
        "warning": "; ".join(dict.fromkeys(warnings)) or None,
        "chunks": [
            {
                "path": h.path,
                "start_line": h.start_line,
                "end_line": h.end_line,
                "location": h.location,
                "symbol": h.symbol,
                "language": h.language,
                "score": round(h.score, 6),
                "text": h.text[:1200],
            }
            for h in code.hits
        ],
        "lessons": [
            {
                "text": h.text,
                "run_id": h.run_id,
                "stage": h.stage,
                "kind": h.kind,
                "outcome": h.outcome,
                "score": round(h.score, 6),
                "source": f"run {h.run_id} / {h.stage}",
            }
            for h in lessons.hits
        ],
    }
