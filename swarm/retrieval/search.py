"""Code search over one commit: ranked chunks with path, line range, score and source.

`search_code` answers one query (the `search_code` tool, `tekton search`, /api/search/);
`code_context` answers several (the goal and each backlog item), fuses their rankings by
reciprocal rank and packs the best chunks into a token budget for a stage's prompt.
Neither raises when Milvus or the embedder is out of reach: they return no hits and a
warning the caller turns into an event.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from swarm.retrieval.chunking import estimate_tokens
from swarm.retrieval.embedders import Embedder
from swarm.retrieval.errors import RetrievalError, RetrievalUnavailable
from swarm.retrieval.store import MAX_IN_TERMS, MODES, RRF_K, ManifestHeader, Store, in_list, quote
from swarm.retrieval.text import file_key, has_terms, lexical

logger = logging.getLogger("tekton.swarm.retrieval.search")

MAX_QUERY_CHARS = 8000
MAX_QUERIES = 8
_HIT_FIELDS = (
    "path",
    "start_line",
    "end_line",
    "language",
    "symbol",
    "content",
    "commit",
    "fkey",
    "blob",
)
_HEADER_TOKENS = 12  # the "path:lines (symbol)" line and fences around each chunk


@dataclass(frozen=True)
class CodeHit:
    path: str
    start_line: int
    end_line: int
    text: str
    score: float
    source: str  # how it was found: "hybrid", "dense" or "bm25"
    symbol: str = ""
    language: str = ""
    blob: str = ""

    @property
    def location(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.text) + _HEADER_TOKENS

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for recording what a stage was given."""
        return asdict(self)


@dataclass(frozen=True)
class CodeSearch:
    hits: list[CodeHit] = field(default_factory=list)
    commit: str | None = None  # the commit whose files were searched
    warning: str | None = None  # set when retrieval degraded (nothing found is no warning)

    @property
    def tokens(self) -> int:
        return sum(h.tokens for h in self.hits)

    def render(self) -> str:
        """The hits as prompt text: location, symbol, then the code, best first."""
        parts = []
        for hit in self.hits:
            title = hit.location + (f" ({hit.symbol})" if hit.symbol else "")
            parts.append(f"{title}\n```{hit.language.lower()}\n{hit.text}\n```")
        return "\n\n".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "warning": self.warning,
            "hits": [h.as_dict() for h in self.hits],
        }


class ManifestCache:
    """The file versions of recently searched commits (a manifest never changes)."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str, str], tuple[ManifestHeader, frozenset[str]]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(
        self, store: Store, repo: str, commit: str
    ) -> tuple[ManifestHeader, frozenset[str]] | None:
        key = (store.prefix, repo, commit)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        header = store.manifest_header(repo, commit)
        if header is None:
            return None
        fkeys = frozenset(file_key(p, b) for p, b, n, _ in store.manifest_entries(header) if n)
        with self._lock:
            self._items[key] = (header, fkeys)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return header, fkeys


def _check_query(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise RetrievalError("the search query is empty")
    return query.strip()[:MAX_QUERY_CHARS]


def _files_of(
    store: Store, manifests: ManifestCache, repo: str, commit: str | None
) -> tuple[str | None, frozenset[str], str | None]:
    """(commit searched, its file keys, warning). A commit not indexed yet falls back to the
    newest indexed one of the repository: stages do not wait for a first build."""
    if commit:
        found = manifests.get(store, repo, commit)
        if found is not None:
            return found[0].commit, found[1], None
    headers = store.manifest_headers(repo)
    if not headers:
        return None, frozenset(), f"{repo} is not indexed yet"
    latest = manifests.get(store, repo, headers[0].commit)
    assert latest is not None
    if not commit:
        return latest[0].commit, latest[1], None
    return (
        latest[0].commit,
        latest[1],
        f"commit {commit[:12]} is not indexed yet; searched {latest[0].commit[:12]} instead",
    )


def _search_one(
    store: Store,
    *,
    repo: str,
    fkeys: frozenset[str],
    dense: list[float] | None,
    query: str,
    k: int,
    mode: str,
) -> list[CodeHit]:
    expr = f"repo == {quote(repo)}"
    limit = k
    if len(fkeys) <= MAX_IN_TERMS:
        expr += f" and {in_list('fkey', sorted(fkeys))}"
    else:
        limit = k * 5  # other versions of the same files may come first: fetch more
    lex = lexical(query) if has_terms(query) else None
    found = store.search(
        "chunks", mode=mode, dense=dense, lexical=lex, expr=expr, limit=limit, fields=_HIT_FIELDS
    )
    hits = []
    for f in found:
        e = f.entity
        if e["fkey"] not in fkeys:
            continue
        hits.append(
            CodeHit(
                path=e["path"], start_line=int(e["start_line"]), end_line=int(e["end_line"]),
                text=e["content"], score=f.score, source=mode, symbol=e["symbol"],
                language=e["language"], blob=e["blob"],
            )
        )  # fmt: skip
    return hits[:k]


def search_code(
    store: Store,
    embedder: Embedder,
    manifests: ManifestCache,
    *,
    repo: str,
    commit: str | None,
    query: str,
    k: int = 10,
    mode: str = "hybrid",
) -> CodeSearch:
    """The `k` chunks of `commit` (None: the newest indexed) of `repo` best matching
    `query`, best first. Raises RetrievalError for an empty query or unknown mode only."""
    query = _check_query(query)
    if mode not in MODES:
        raise RetrievalError(f"unknown search mode {mode!r} ({', '.join(MODES)})")
    if k < 1:
        raise RetrievalError(f"k must be at least 1, got {k}")
    try:
        store.ensure(embedder)
        searched, fkeys, warning = _files_of(store, manifests, repo, commit)
        if not fkeys:
            return CodeSearch(commit=searched, warning=warning)
        dense = embedder.embed([query])[0] if mode != "bm25" else None
        hits = _search_one(store, repo=repo, fkeys=fkeys, dense=dense, query=query, k=k, mode=mode)
        return CodeSearch(hits=hits, commit=searched, warning=warning)
    except RetrievalUnavailable as exc:
        logger.warning("code search degraded: %s", exc)
        return CodeSearch(warning=str(exc))


def code_context(
    store: Store,
    embedder: Embedder,
    manifests: ManifestCache,
    *,
    repo: str,
    commit: str | None,
    queries: Sequence[str],
    token_budget: int,
    k: int = 20,
    mode: str = "hybrid",
) -> CodeSearch:
    """The chunks most relevant to all of `queries` (the goal first, then backlog items;
    at most 8 are used), fused by reciprocal rank and packed best-first into
    `token_budget` estimated tokens. A chunk that does not fit is passed over for a smaller
    one further down. `score` is the fused score."""
    queries = [_check_query(q) for q in queries if isinstance(q, str) and q.strip()][:MAX_QUERIES]
    if not queries:
        raise RetrievalError("code context needs at least one non-empty query")
    if token_budget < 1:
        return CodeSearch()
    try:
        store.ensure(embedder)
        searched, fkeys, warning = _files_of(store, manifests, repo, commit)
        if not fkeys:
            return CodeSearch(commit=searched, warning=warning)
        vectors: list[list[float] | None] = (
            list(embedder.embed(queries)) if mode != "bm25" else [None] * len(queries)
        )
        fused: dict[str, float] = {}
        best: dict[str, CodeHit] = {}
        for query, dense in zip(queries, vectors, strict=True):
            ranked = _search_one(
                store, repo=repo, fkeys=fkeys, dense=dense, query=query, k=k, mode=mode
            )
            for rank, hit in enumerate(ranked, start=1):
                fused[hit.location] = fused.get(hit.location, 0.0) + 1.0 / (RRF_K + rank)
                best.setdefault(hit.location, hit)
    except RetrievalUnavailable as exc:
        logger.warning("code context degraded: %s", exc)
        return CodeSearch(warning=str(exc))
    chosen: list[CodeHit] = []
    left = token_budget
    for location in sorted(fused, key=lambda loc: -fused[loc]):
        hit = best[location]
        if hit.tokens <= left:
            chosen.append(CodeHit(**{**hit.as_dict(), "score": round(fused[location], 6)}))
            left -= hit.tokens
    return CodeSearch(hits=chosen, commit=searched, warning=warning)
