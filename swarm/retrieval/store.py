"""Everything Milvus: the connection, one set of collections per namespace, and the few
reads and writes indexing, search and lessons need.

Collections of namespace NS (non-identifier characters become `_` plus a short hash, so
two namespaces never share a name):
- `NS_chunks`: one row per chunk of one version of one file (repository, path, blob sha,
  line range, language, symbol, the commit it was first seen in), a dense vector and a
  BM25 sparse vector computed by Milvus from the `lexical` text.
- `NS_lessons`: one row per lesson (repository, run, stage, kind, outcome, created), dense
  and BM25 vectors over the text.
- `NS_manifests`: the per-commit manifest, "which file versions make up this commit", as
  JSON pages. It lives in Milvus, beside the vectors it describes, rather than in a file
  under the data directory: worker processes on other machines share one Milvus server
  but no data directory, and a manifest must vanish with the index it describes (a
  dropped or re-embedded collection, another namespace). Its header row (page 0) is
  written last, so a commit whose indexing was interrupted reads as not indexed.

The embedding model and dimension are recorded as properties of every collection. On a
different model the chunks and manifests are dropped (the next indexing rebuilds them from
git) and lessons, which only exist here, are re-embedded from their stored text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm.retrieval.errors import RetrievalError, RetrievalUnavailable
from swarm.retrieval.text import repo_key, short_hash

logger = logging.getLogger("tekton.swarm.retrieval.store")

SCHEMA_VERSION = "1"
MODES = ("hybrid", "dense", "bm25")
RRF_K = 60
MANIFEST_PAGE_BYTES = 60000
MAX_IN_TERMS = 10000  # longer `in [...]` lists are filtered after the search instead
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ENTITY_KINDS = ("chunks", "lessons", "manifests")
_QUERY_WINDOW = 16384  # Milvus' limit on offset + limit of one query


def collection_prefix(namespace: str) -> str:
    """The collection-name prefix of `namespace` (letters, digits, `_`, `.`, `-`)."""
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise RetrievalError(
            f"namespace must be 1-63 letters, digits, '_', '.' or '-', got {namespace!r}"
        )
    safe = re.sub(r"[^A-Za-z0-9_]", "_", namespace)
    if safe[0].isdigit():
        safe = "n" + safe
    if safe != namespace:
        safe = f"{safe}_{short_hash(namespace, n=6)}"
    return safe


def quote(value: str) -> str:
    """A Milvus filter string literal."""
    return json.dumps(value, ensure_ascii=False)


def in_list(field: str, values: Iterable[str | int]) -> str:
    items = ", ".join(quote(v) if isinstance(v, str) else str(int(v)) for v in values)
    return f"{field} in [{items}]"


@dataclass(frozen=True)
class ManifestHeader:
    repo: str
    commit: str
    files: int
    chunks: int
    pages: int
    indexed_at: float
    model: str


@dataclass(frozen=True)
class Found:
    id: str
    score: float
    entity: dict[str, Any]


def _fields_of(kind: str) -> tuple[str, ...]:
    return {
        "chunks": (
            "id", "repo", "fkey", "blob", "path", "chunk_no", "start_line", "end_line",
            "language", "symbol", "commit", "content",
        ),
        "lessons": (
            "id", "repo", "run_id", "stage", "kind", "outcome", "created_at", "text",
        ),
        "manifests": (
            "id", "repo", "commit", "page", "pages", "files", "chunks", "indexed_at", "model",
            "body",
        ),
    }[kind]  # fmt: skip


class Store:
    """One namespace's collections on one Milvus. `uri` is a Milvus server
    (`http://host:19530`, MILVUS_URI) with optional `token` (MILVUS_TOKEN), or a local
    `.db` path for an in-process Milvus Lite (one process only: tests, benchmarks); with no
    `uri`, the on-demand milvus-lite server of `data_dir` is used (started when needed).

    Connects lazily and is safe to share between threads. Every Milvus failure surfaces
    as RetrievalUnavailable; after one, the next call reconnects (and restarts the local
    server if it died); a failed connect is not retried for `retry_after_s`."""

    def __init__(
        self,
        *,
        namespace: str = "tekton",
        uri: str | None = None,
        token: str | None = None,
        data_dir: str | Path | None = None,
        timeout_s: float = 10.0,
        retry_after_s: float = 15.0,
    ) -> None:
        if uri is None and data_dir is None:
            raise RetrievalError("retrieval needs a Milvus URI or a data directory")
        self.namespace = namespace
        self.prefix = collection_prefix(namespace)
        self.names = {kind: f"{self.prefix}_{kind}" for kind in _ENTITY_KINDS}
        self.uri = uri
        self._token = token
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._down: tuple[float, str] | None = None  # (until, why) after a failed connect
        self._lock = threading.RLock()
        self._client: Any = None
        self._ready: tuple[str, int] | None = None

    # --- connection ---------------------------------------------------------------------

    @property
    def mode(self) -> str:
        if self.uri is None:
            return "milvus-lite server (on demand)"
        if self.uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:")):
            return "milvus server"
        return "milvus-lite (in process)"

    def _connect(self) -> Any:
        from pymilvus import MilvusClient  # deferred: importing pymilvus takes seconds

        if self.uri is None:
            from swarm.retrieval.server import local_server_ensure

            uri = local_server_ensure(self.data_dir)  # type: ignore[arg-type]
        else:
            uri = self.uri
            if self.mode == "milvus-lite (in process)":
                Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return MilvusClient(uri=uri, token=self._token or "", timeout=self.timeout_s)

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                # After a failed connect, fail fast for a while: a Milvus that is down
                # must not cost every stage a connect timeout.
                if self._down is not None and time.monotonic() < self._down[0]:
                    raise RetrievalUnavailable(self._down[1])
                try:
                    with self.guard("connect"):
                        self._client = self._connect()
                except RetrievalUnavailable as exc:
                    self._down = (time.monotonic() + self.retry_after_s, str(exc))
                    raise
                self._down = None
            return self._client

    @contextlib.contextmanager
    def guard(self, doing: str) -> Iterator[None]:
        """Turn a Milvus failure into RetrievalUnavailable naming what was being done."""
        import grpc
        from pymilvus.exceptions import MilvusException

        try:
            yield
        except RetrievalUnavailable:
            self._drop_client()
            raise
        except (MilvusException, grpc.RpcError, ConnectionError, TimeoutError) as exc:
            self._drop_client()
            detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            where = self.uri or f"the local milvus-lite server of {self.data_dir}"
            raise RetrievalUnavailable(
                f"Milvus unavailable ({doing} at {safe_uri(where)}): {str(detail).splitlines()[0][:300]}"
            ) from None

    def _drop_client(self) -> None:
        with self._lock:
            client, self._client, self._ready = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def close(self) -> None:
        self._drop_client()

    # --- collections --------------------------------------------------------------------

    def _schema(self, kind: str, dim: int) -> tuple[Any, list[tuple[str, str, str]]]:
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=256)
        s.add_field("repo", DataType.VARCHAR, max_length=4096)
        index: list[tuple[str, str, str]] = []  # (field, index type, metric)
        if kind == "manifests":
            for name in ("commit", "model"):
                s.add_field(name, DataType.VARCHAR, max_length=256)
            for name in ("page", "pages", "files", "chunks"):
                s.add_field(name, DataType.INT64)
            s.add_field("indexed_at", DataType.DOUBLE)
            s.add_field("body", DataType.VARCHAR, max_length=65535)
            s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field
            index.append(("vec", "AUTOINDEX", "L2"))
            return s, index
        if kind == "chunks":
            for name, length in (
                ("fkey", 32), ("blob", 64), ("path", 4096), ("language", 64), ("symbol", 512),
                ("commit", 64), ("content", 65535),
            ):  # fmt: skip
                s.add_field(name, DataType.VARCHAR, max_length=length)
            for name in ("chunk_no", "start_line", "end_line"):
                s.add_field(name, DataType.INT64)
            source = "lexical"
        else:
            s.add_field("run_id", DataType.INT64)
            for name, length in (("stage", 64), ("kind", 64), ("outcome", 256), ("text", 65535)):
                s.add_field(name, DataType.VARCHAR, max_length=length)
            s.add_field("created_at", DataType.DOUBLE)
            source = "lexical"
        s.add_field(source, DataType.VARCHAR, max_length=65535, enable_analyzer=True)
        s.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_function(
            Function(
                name=f"{kind}_bm25",
                function_type=FunctionType.BM25,
                input_field_names=[source],
                output_field_names=["sparse"],
            )
        )
        index.append(("dense", "AUTOINDEX", "COSINE"))
        index.append(("sparse", "SPARSE_INVERTED_INDEX", "BM25"))
        return s, index

    def recorded_model(self) -> tuple[str, int] | None:
        """(model, dim) recorded on this namespace's chunks collection, None if none yet."""
        c = self.client()
        with self.guard("describe"):
            if not c.has_collection(self.names["chunks"], timeout=self.timeout_s):
                return None
            props = c.describe_collection(self.names["chunks"], timeout=self.timeout_s).get(
                "properties", {}
            )
        if "tekton.model" not in props:
            return None
        return props["tekton.model"], int(props.get("tekton.dim", 0))

    def ensure(self, embedder: Any) -> None:
        """Create this namespace's collections for `embedder`'s model and dimension, and
        rebuild those recorded with another (see the module docstring). Idempotent."""
        model, dim = embedder.model, embedder.dim
        with self._lock:
            if self._ready == (model, dim):
                return
            c = self.client()
            with self.guard("prepare collections"):
                stale: list[str] = []
                for kind, name in self.names.items():
                    if not c.has_collection(name, timeout=self.timeout_s):
                        continue
                    props = c.describe_collection(name, timeout=self.timeout_s).get(
                        "properties", {}
                    )
                    recorded = (
                        props.get("tekton.model"),
                        props.get("tekton.dim"),
                        props.get("tekton.schema"),
                    )
                    if recorded != (model, str(dim), SCHEMA_VERSION):
                        logger.warning(
                            "%s was built with %s (dim %s), now %s (dim %s): rebuilding it",
                            name, recorded[0], recorded[1], model, dim,
                        )  # fmt: skip
                        stale.append(kind)
                if "chunks" in stale or "manifests" in stale:
                    stale = sorted({*stale, "chunks", "manifests"})
                saved_lessons = self._read_all("lessons") if "lessons" in stale else []
                for kind in stale:
                    c.drop_collection(self.names[kind], timeout=self.timeout_s)
                for kind, name in self.names.items():
                    self._create(c, kind, name, model, dim)
            self._ready = (model, dim)
        if saved_lessons:
            self._reembed_lessons(saved_lessons, embedder)

    def _create(self, c: Any, kind: str, name: str, model: str, dim: int) -> None:
        """Create `name` if missing, its indexes if missing, and load it. Tolerates another
        process doing the same at the same moment."""
        from pymilvus.exceptions import MilvusException

        schema, index = self._schema(kind, dim)
        if not c.has_collection(name, timeout=self.timeout_s):
            props = {"tekton.model": model, "tekton.dim": str(dim), "tekton.schema": SCHEMA_VERSION}
            try:
                c.create_collection(name, schema=schema, properties=props, timeout=self.timeout_s)
            except MilvusException:
                # Another process is creating it at this moment (Milvus Lite then fails
                # with "File exists"): wait for that one to finish.
                deadline = time.monotonic() + self.timeout_s
                while not c.has_collection(name, timeout=self.timeout_s):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        have = set(c.list_indexes(name, timeout=self.timeout_s))
        missing = c.prepare_index_params()
        for field_name, index_type, metric in index:
            if field_name not in have:
                missing.add_index(field_name=field_name, index_type=index_type, metric_type=metric)
        if len(missing):
            # sync=False: pymilvus would otherwise poll each new index for half a second.
            with contextlib.suppress(MilvusException):
                c.create_index(name, missing, timeout=self.timeout_s, sync=False)
        c.load_collection(name, timeout=self.timeout_s)

    def _reembed_lessons(self, rows: list[dict[str, Any]], embedder: Any) -> None:
        from swarm.retrieval.text import lexical

        for i in range(0, len(rows), 256):
            batch = rows[i : i + 256]
            vectors = embedder.embed([r["text"] for r in batch])
            for row, vector in zip(batch, vectors, strict=True):
                row["dense"] = vector
                row["lexical"] = lexical(row["text"], extra=f"{row['stage']} {row['kind']}")
            self.upsert("lessons", batch)
        logger.warning("re-embedded %d lessons with %s", len(rows), embedder.model)

    def _read_all(self, kind: str) -> list[dict[str, Any]]:
        c = self.client()
        out: list[dict[str, Any]] = []
        with self.guard(f"read {kind}"):
            it = c.query_iterator(
                self.names[kind],
                batch_size=1000,
                filter='id != ""',
                output_fields=list(_fields_of(kind)),
            )
            try:
                while batch := it.next():
                    out.extend(dict(r) for r in batch)
            finally:
                it.close()
        return out

    def collections(self) -> list[str]:
        """This namespace's collections that exist on the server."""
        c = self.client()
        with self.guard("list collections"):
            existing = set(c.list_collections(timeout=self.timeout_s))
        return [name for name in self.names.values() if name in existing]

    # --- reads and writes ---------------------------------------------------------------

    def upsert(self, kind: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        c = self.client()
        with self.guard(f"write {kind}"):
            c.upsert(self.names[kind], list(rows), timeout=self.timeout_s)

    def delete(self, kind: str, expr: str) -> None:
        c = self.client()
        with self.guard(f"delete {kind}"):
            c.delete(self.names[kind], filter=expr, timeout=self.timeout_s)

    def flush(self, kind: str) -> None:
        """Seal what was written: Milvus Lite searches sealed segments far faster."""
        c = self.client()
        with self.guard(f"flush {kind}"):
            c.flush(self.names[kind], timeout=self.timeout_s)

    def query(
        self, kind: str, expr: str, fields: Sequence[str], *, limit: int = _QUERY_WINDOW
    ) -> list[dict[str, Any]]:
        c = self.client()
        with self.guard(f"read {kind}"):
            rows = c.query(
                self.names[kind], filter=expr, output_fields=list(fields), limit=limit,
                timeout=self.timeout_s,
            )  # fmt: skip
        return [dict(r) for r in rows]

    def get(self, kind: str, ids: Sequence[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        c = self.client()
        with self.guard(f"read {kind}"):
            rows = c.get(
                self.names[kind], ids=list(ids), output_fields=list(fields), timeout=self.timeout_s
            )
        return [dict(r) for r in rows]

    def count(self, kind: str, expr: str) -> int:
        c = self.client()
        with self.guard(f"count {kind}"):
            rows = c.query(
                self.names[kind], filter=expr, output_fields=["count(*)"], timeout=self.timeout_s
            )
        return int(rows[0]["count(*)"]) if rows else 0

    def search(
        self,
        kind: str,
        *,
        mode: str,
        dense: Sequence[float] | None,
        lexical: str | None,
        expr: str,
        limit: int,
        fields: Sequence[str],
    ) -> list[Found]:
        """Top `limit` rows matching `expr`: by cosine on `dense`, by BM25 on `lexical`, or
        both fused by reciprocal rank (k=60). A missing side is left out."""
        if mode not in MODES:
            raise RetrievalError(f"unknown search mode {mode!r} ({', '.join(MODES)})")
        from pymilvus import AnnSearchRequest, RRFRanker

        c = self.client()
        name = self.names[kind]
        use_dense = dense is not None and mode in ("hybrid", "dense")
        use_bm25 = lexical is not None and mode in ("hybrid", "bm25")
        if not (use_dense or use_bm25):
            return []
        with self.guard(f"search {kind}"):
            if use_dense and use_bm25:
                requests = [
                    AnnSearchRequest(
                        data=[list(dense)], anns_field="dense", param={"metric_type": "COSINE"},
                        limit=limit, expr=expr,
                    ),
                    AnnSearchRequest(
                        data=[lexical], anns_field="sparse", param={"metric_type": "BM25"},
                        limit=limit, expr=expr,
                    ),
                ]  # fmt: skip
                hits = c.hybrid_search(
                    name, requests, RRFRanker(RRF_K), limit=limit, output_fields=list(fields),
                    timeout=self.timeout_s,
                )[0]  # fmt: skip
            elif use_dense:
                hits = c.search(
                    name, data=[list(dense)], anns_field="dense", filter=expr, limit=limit,
                    search_params={"metric_type": "COSINE"}, output_fields=list(fields),
                    timeout=self.timeout_s,
                )[0]  # fmt: skip
            else:
                hits = c.search(
                    name, data=[lexical], anns_field="sparse", filter=expr, limit=limit,
                    search_params={"metric_type": "BM25"}, output_fields=list(fields),
                    timeout=self.timeout_s,
                )[0]  # fmt: skip
        found = []
        for hit in hits:
            # Milvus Lite reports BM25 as a negative distance, Milvus as a positive score.
            score = abs(float(hit["distance"])) if mode == "bm25" else float(hit["distance"])
            found.append(Found(id=str(hit["id"]), score=score, entity=dict(hit["entity"])))
        return found

    # --- manifests ----------------------------------------------------------------------

    def _manifest_id(self, repo: str, commit: str, page: int) -> str:
        return f"{repo_key(repo)}:{commit}:{page}"

    def manifest_write(
        self, *, repo: str, commit: str, entries: list[list[Any]], chunks: int, model: str
    ) -> None:
        """Store the manifest of `commit`: pages first, then the header that makes it real."""
        pages: list[str] = []
        current: list[list[Any]] = []
        size = 2
        for entry in entries:
            encoded = len(json.dumps(entry, ensure_ascii=False).encode("utf-8")) + 1
            if current and size + encoded > MANIFEST_PAGE_BYTES:
                pages.append(json.dumps(current, ensure_ascii=False))
                current, size = [], 2
            current.append(entry)
            size += encoded
        pages.append(json.dumps(current, ensure_ascii=False))
        now = time.time()

        def row(page: int, body: str) -> dict[str, Any]:
            return {
                "id": self._manifest_id(repo, commit, page), "repo": repo, "commit": commit,
                "page": page, "pages": len(pages), "files": len(entries), "chunks": chunks,
                "indexed_at": now, "model": model, "body": body, "vec": [0.0, 0.0],
            }  # fmt: skip

        self.upsert("manifests", [row(i + 1, body) for i, body in enumerate(pages)])
        self.upsert("manifests", [row(0, "")])
        self.flush("manifests")

    def manifest_header(self, repo: str, commit: str) -> ManifestHeader | None:
        rows = self.get(
            "manifests", [self._manifest_id(repo, commit, 0)], _fields_of("manifests")[:-1]
        )
        return _header(rows[0]) if rows else None

    def manifest_entries(self, header: ManifestHeader) -> list[list[Any]]:
        ids = [self._manifest_id(header.repo, header.commit, p + 1) for p in range(header.pages)]
        rows = {r["page"]: r["body"] for r in self.get("manifests", ids, ["page", "body"])}
        if len(rows) != header.pages:
            raise RetrievalUnavailable(
                f"the manifest of {header.commit[:12]} is missing pages ({len(rows)}/{header.pages})"
            )
        entries: list[list[Any]] = []
        for page in sorted(rows):
            entries.extend(json.loads(rows[page]))
        return entries

    def manifest_headers(self, repo: str | None = None) -> list[ManifestHeader]:
        """Every indexed commit (of `repo`), newest first."""
        expr = "page == 0" + (f" and repo == {quote(repo)}" if repo is not None else "")
        rows = self.query("manifests", expr, _fields_of("manifests")[:-1])
        return sorted((_header(r) for r in rows), key=lambda h: h.indexed_at, reverse=True)


def _header(row: dict[str, Any]) -> ManifestHeader:
    return ManifestHeader(
        repo=row["repo"],
        commit=row["commit"],
        files=int(row["files"]),
        chunks=int(row["chunks"]),
        pages=int(row["pages"]),
        indexed_at=float(row["indexed_at"]),
        model=row["model"],
    )


def safe_uri(uri: str) -> str:
    # A URI may carry credentials (http://user:pass@host): never show them.
    return re.sub(r"//[^/@]*@", "//***@", uri)
