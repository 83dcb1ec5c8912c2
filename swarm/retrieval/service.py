"""One object per installation that the Django side calls: `Retrieval`.

    retrieval = retrieval_for(RetrievalConfig(namespace=..., data_dir=..., milvus_uri=...))
    retrieval.index_commit(repo=run.repo_path, path=run.repo_path, commit=sha, progress=cb)
    retrieval.code_context(repo=..., commit=sha, queries=[goal, *backlog], token_budget=3000)
    retrieval.search_code(repo=..., commit=sha, query="where are tokens revoked")
    retrieval.lesson_add(repo=..., text=..., run_id=..., stage="review", kind="review", key="event:42")
    retrieval.lessons_provider(visible_run_ids=..., exclude_run_id=run.pk).lessons_for(...)
    retrieval.status()

Nothing connects, loads a model or imports pymilvus until a method needs it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swarm.retrieval import indexer, lessons, search
from swarm.retrieval.chunking import MAX_CHARS, MAX_FILE_BYTES
from swarm.retrieval.embedders import Embedder, EmbeddingConfig, embedder_build
from swarm.retrieval.errors import RetrievalError, RetrievalUnavailable
from swarm.retrieval.store import Store, quote, safe_uri

logger = logging.getLogger("tekton.swarm.retrieval.service")


@dataclass(frozen=True)
class RetrievalConfig:
    """`namespace`: TEKTON_NAMESPACE. `milvus_uri`/`milvus_token`: MILVUS_URI/MILVUS_TOKEN
    (a server shared by every worker); without a URI the on-demand milvus-lite server keeps
    its data under `data_dir` (e.g. TEKTON_DATA_DIR/milvus). A `milvus_uri` that is a local
    path ending in .db opens Milvus Lite inside this one process (tests, benchmarks)."""

    namespace: str = "tekton"
    data_dir: Path | None = None
    milvus_uri: str | None = None
    milvus_token: str | None = field(default=None, repr=False)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    max_chars: int = MAX_CHARS
    max_file_bytes: int = MAX_FILE_BYTES
    timeout_s: float = 10.0
    retry_after_s: float = 15.0  # after Milvus could not be reached, fail fast this long

    def __post_init__(self) -> None:
        if self.milvus_uri is None and self.data_dir is None:
            raise RetrievalError("retrieval needs MILVUS_URI or a data directory")
        if self.max_chars < 200:
            raise RetrievalError(f"max_chars must be at least 200, got {self.max_chars}")


class _LazyEmbedder:
    """Builds the configured embedder on first use, so a missing key or model surfaces
    as RetrievalUnavailable where retrieval degrades, not when Tekton starts."""

    def __init__(self, config: EmbeddingConfig, env: Mapping[str, str] | None) -> None:
        self.config = config
        self._env = env
        self._real: Embedder | None = None
        self._lock = threading.Lock()

    def _get(self) -> Embedder:
        with self._lock:
            if self._real is None:
                self._real = embedder_build(self.config, env=self._env)
            return self._real

    @property
    def model(self) -> str:
        if self.config.backend == "openai":
            return f"openai/{self.config.model}"
        return self._get().model

    @property
    def dim(self) -> int:
        return self._get().dim

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self._get().embed(texts)


@dataclass(frozen=True)
class RepoIndexStatus:
    repo: str
    last_commit: str | None
    last_indexed_at: float | None
    commits_indexed: int
    files: int  # of the last indexed commit
    chunks: int  # of the last indexed commit
    chunk_rows: int  # every stored version
    lessons: int


@dataclass(frozen=True)
class RetrievalStatus:
    namespace: str
    mode: str
    uri: str
    reachable: bool
    error: str | None
    collections: list[str]
    embedding_model: str
    embedding_dim: int | None
    embedding_error: str | None
    index_model: str | None  # recorded on the collections (differs: a rebuild is due)
    index_dim: int | None
    repos: list[RepoIndexStatus]
    server_pid: int | None = None  # the on-demand milvus-lite server, when running

    @property
    def ok(self) -> bool:
        return self.reachable and self.embedding_error is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Retrieval:
    """Indexing, code search, lessons and status for one namespace. Thread-safe; share
    one per process (`retrieval_for`). Stage-facing reads (`search_code`, `code_context`,
    `lesson_search`, `lessons_provider`) never raise RetrievalUnavailable: they return
    empty results with `.warning` set. Writes and `index_commit` raise it."""

    def __init__(self, config: RetrievalConfig, *, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.store = Store(
            namespace=config.namespace,
            uri=config.milvus_uri,
            token=config.milvus_token,
            data_dir=config.data_dir,
            timeout_s=config.timeout_s,
            retry_after_s=config.retry_after_s,
        )
        self.embedder: Embedder = _LazyEmbedder(config.embedding, env)
        self.manifests = search.ManifestCache()

    def close(self) -> None:
        self.store.close()

    # --- code ---------------------------------------------------------------------------

    def index_commit(
        self,
        *,
        repo: str,
        path: str | Path,
        commit: str = "HEAD",
        progress: indexer.Progress | None = None,
        force: bool = False,
    ) -> indexer.IndexReport:
        """See swarm.retrieval.indexer.index_commit; `progress(done, total, path)`."""
        return indexer.index_commit(
            self.store, self.embedder, repo=repo, path=path, commit=commit, progress=progress,
            max_chars=self.config.max_chars, max_file_bytes=self.config.max_file_bytes,
            force=force,
        )  # fmt: skip

    def is_indexed(self, *, repo: str, commit: str) -> bool:
        """True when `commit` (a full sha) of `repo` has a manifest. Raises
        RetrievalUnavailable when Milvus cannot be asked."""
        if self.store.names["manifests"] not in self.store.collections():
            return False
        return self.store.manifest_header(repo, commit) is not None

    def search_code(
        self, *, repo: str, commit: str | None, query: str, k: int = 10, mode: str = "hybrid"
    ) -> search.CodeSearch:
        return search.search_code(
            self.store, self.embedder, self.manifests, repo=repo, commit=commit, query=query,
            k=k, mode=mode,
        )  # fmt: skip

    def code_context(
        self,
        *,
        repo: str,
        commit: str | None,
        queries: Sequence[str],
        token_budget: int,
        k: int = 20,
        mode: str = "hybrid",
    ) -> search.CodeSearch:
        return search.code_context(
            self.store, self.embedder, self.manifests, repo=repo, commit=commit,
            queries=queries, token_budget=token_budget, k=k, mode=mode,
        )  # fmt: skip

    # --- lessons ------------------------------------------------------------------------

    def lesson_add(self, **kwargs: Any) -> str:
        """See swarm.retrieval.lessons.lesson_add."""
        return lessons.lesson_add(self.store, self.embedder, **kwargs)

    def lesson_search(self, **kwargs: Any) -> lessons.LessonSearch:
        """See swarm.retrieval.lessons.lesson_search."""
        return lessons.lesson_search(self.store, self.embedder, **kwargs)

    def lessons_provider(
        self,
        *,
        visible_run_ids: Collection[int] | None,
        exclude_run_id: int | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> lessons.MilvusLessons:
        """A swarm.context.LessonsProvider for one user's stage."""
        return lessons.MilvusLessons(
            self.lesson_search,
            visible_run_ids=visible_run_ids,
            exclude_run_id=exclude_run_id,
            on_warning=on_warning,
        )

    # --- status -------------------------------------------------------------------------

    def status(self, repos: Sequence[str] = ()) -> RetrievalStatus:
        """What the system checks show. Never raises: failures become `error` and
        `embedding_error`. Reads only (creates no collection). `repos` are reported even
        when nothing of theirs is indexed."""
        store = self.store
        embedding_error = None
        dim = None
        try:
            dim = self.embedder.dim
            self.embedder.embed(["status probe"])
        except RetrievalUnavailable as exc:
            embedding_error = str(exc)
        try:
            model = self.embedder.model
        except RetrievalUnavailable:
            model = self.config.embedding.model or self.config.embedding.backend
        base = {
            "namespace": self.config.namespace,
            "mode": store.mode,
            "uri": safe_uri(store.uri or str(store.data_dir)),
            "embedding_model": model,
            "embedding_dim": dim,
            "embedding_error": embedding_error,
        }
        try:
            collections = store.collections()
            recorded = store.recorded_model()
            names = store.names
            headers = store.manifest_headers() if names["manifests"] in collections else []
            by_repo: dict[str, list[Any]] = {r: [] for r in repos}
            for header in headers:
                by_repo.setdefault(header.repo, []).append(header)
            if names["lessons"] in collections:
                for row in store.query("lessons", 'id != ""', ["repo"]):
                    by_repo.setdefault(row["repo"], [])
            repo_status = []
            for repo, hs in sorted(by_repo.items()):
                last = hs[0] if hs else None
                expr = f"repo == {quote(repo)}"
                repo_status.append(
                    RepoIndexStatus(
                        repo=repo,
                        last_commit=last.commit if last else None,
                        last_indexed_at=last.indexed_at if last else None,
                        commits_indexed=len(hs),
                        files=last.files if last else 0,
                        chunks=last.chunks if last else 0,
                        chunk_rows=store.count("chunks", expr)
                        if names["chunks"] in collections
                        else 0,
                        lessons=store.count("lessons", expr)
                        if names["lessons"] in collections
                        else 0,
                    )
                )
        except RetrievalUnavailable as exc:
            return RetrievalStatus(
                **base, reachable=False, error=str(exc), collections=[], index_model=None,
                index_dim=None, repos=[], server_pid=self._server_pid(),
            )  # fmt: skip
        return RetrievalStatus(
            **base, reachable=True, error=None, collections=collections,
            index_model=recorded[0] if recorded else None,
            index_dim=recorded[1] if recorded else None, repos=repo_status,
            server_pid=self._server_pid(),
        )  # fmt: skip

    def _server_pid(self) -> int | None:
        """The on-demand server's pid (looked up after the calls that may start it)."""
        if self.store.uri is not None:
            return None
        from swarm.retrieval.server import local_server_info

        running = local_server_info(self.store.data_dir)  # type: ignore[arg-type]
        return running.pid if running else None


@functools.lru_cache(maxsize=8)
def retrieval_for(config: RetrievalConfig) -> Retrieval:
    """The process's shared Retrieval for `config` (one client, one manifest cache)."""
    return Retrieval(config)
