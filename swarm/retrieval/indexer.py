"""Index one commit of a repository: chunk, redact, embed and store what changed.

Incremental by git blob sha: a file version (path + blob) already in the index from any
earlier commit is not read or embedded again, and neither is one that an earlier manifest
of the repository found unreadable (binary, generated, minified, empty). The commit's
manifest, written last, lists every file version that makes it up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm.redact import Labeller, redact
from swarm.repo import language_of
from swarm.retrieval._git import TreeEntry, read_blobs, resolve_commit, tree_files
from swarm.retrieval.chunking import MAX_CHARS, MAX_FILE_BYTES, chunk_text, decode_text, skip_reason
from swarm.retrieval.embedders import Embedder
from swarm.retrieval.errors import RetrievalError
from swarm.retrieval.store import Store, in_list, quote
from swarm.retrieval.text import clip_bytes, file_key, lexical, repo_key

logger = logging.getLogger("tekton.swarm.retrieval.indexer")

# (files done, files to read, path just done): what a progress bar needs.
Progress = Callable[[int, int, str], None]
EMBED_BATCH = 256
MAX_REPO_BYTES = 2048
_LOOKUP_BATCH = 200


@dataclass(frozen=True)
class IndexReport:
    repo: str
    commit: str
    files: int  # regular files in the commit
    embedded_files: int  # read, chunked and embedded by this call
    reused_files: int  # already indexed from an earlier commit
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> files
    chunks_added: int = 0
    chunks: int = 0  # chunks that make up the commit
    seconds: float = 0.0
    already_indexed: bool = False


def _known(store: Store, repo: str, fkeys: list[str]) -> dict[str, int]:
    """fkey -> chunk count, for the file versions already in the index."""
    counts: dict[str, int] = {}
    for i in range(0, len(fkeys), _LOOKUP_BATCH):
        batch = fkeys[i : i + _LOOKUP_BATCH]
        rows = store.query(
            "chunks", f"repo == {quote(repo)} and {in_list('fkey', batch)}", ["fkey"]
        )
        for row in rows:
            counts[row["fkey"]] = counts.get(row["fkey"], 0) + 1
    return counts


def _unreadable_before(store: Store, repo: str) -> dict[str, str]:
    """fkey -> reason, for versions the newest manifest found unreadable or empty."""
    headers = store.manifest_headers(repo)
    if not headers:
        return {}
    return {
        file_key(path, blob): reason
        for path, blob, n, reason in store.manifest_entries(headers[0])
        if n == 0 and reason
    }


def index_commit(
    store: Store,
    embedder: Embedder,
    *,
    repo: str,
    path: str | Path,
    commit: str = "HEAD",
    progress: Progress | None = None,
    max_chars: int = MAX_CHARS,
    max_file_bytes: int = MAX_FILE_BYTES,
    force: bool = False,
) -> IndexReport:
    """Index `commit` of the git repository at `path`, stored under the name `repo`.

    Returns at once when the commit is already indexed (unless `force`). Safe to run
    twice at once (rows are keyed by content, writes are upserts). Raises RetrievalError
    for a bad path or commit, RetrievalUnavailable when Milvus or the embedder fails
    (then nothing claims the commit is indexed; the next call picks up what was stored)."""
    started = time.monotonic()
    if not repo or len(repo.encode("utf-8")) > MAX_REPO_BYTES:
        raise RetrievalError(f"a repository name must be 1 to {MAX_REPO_BYTES} bytes")
    root = Path(path).expanduser()
    sha = resolve_commit(root, commit)
    store.ensure(embedder)
    header = store.manifest_header(repo, sha)
    if header is not None and not force:
        return IndexReport(
            repo=repo, commit=sha, files=header.files, embedded_files=0,
            reused_files=header.files, chunks=header.chunks,
            seconds=time.monotonic() - started, already_indexed=True,
        )  # fmt: skip

    entries = tree_files(root, sha)
    skipped: dict[str, int] = {}
    outcome: dict[str, tuple[int, str]] = {}  # path -> (chunks, skip reason)
    readable: list[TreeEntry] = []
    for entry in entries:
        reason = skip_reason(entry.path, entry.size, max_bytes=max_file_bytes)
        if reason:
            outcome[entry.path] = (0, reason)
            skipped[reason] = skipped.get(reason, 0) + 1
        else:
            readable.append(entry)

    keys = {e.path: file_key(e.path, e.blob) for e in readable}
    if force:  # chunking may have changed: leave no stale chunk of these versions behind
        fkeys = list(keys.values())
        for i in range(0, len(fkeys), _LOOKUP_BATCH):
            store.delete(
                "chunks",
                f"repo == {quote(repo)} and {in_list('fkey', fkeys[i : i + _LOOKUP_BATCH])}",
            )
    known = {} if force else _known(store, repo, list(keys.values()))
    unreadable = {} if force else _unreadable_before(store, repo)
    todo: list[TreeEntry] = []
    reused = 0
    for entry in readable:
        fkey = keys[entry.path]
        if fkey in known:
            outcome[entry.path] = (known[fkey], "")
            reused += 1
        elif fkey in unreadable:
            outcome[entry.path] = (0, unreadable[fkey])
            skipped[unreadable[fkey]] = skipped.get(unreadable[fkey], 0) + 1
        else:
            todo.append(entry)

    total = len(todo)
    if progress is not None:
        progress(0, total, "")
    rkey = repo_key(repo)
    pending: list[dict[str, Any]] = []  # rows of whole files, waiting to be embedded
    added = embedded = 0

    def write() -> None:
        nonlocal added
        if not pending:
            return
        vectors = embedder.embed([r.pop("_embed") for r in pending])
        for row, vector in zip(pending, vectors, strict=True):
            row["dense"] = vector
        store.upsert("chunks", pending)
        added += len(pending)
        pending.clear()

    for done, (entry, (_, data)) in enumerate(
        zip(todo, read_blobs(root, [e.blob for e in todo]), strict=True), start=1
    ):
        text, reason = decode_text(data)
        chunks = chunk_text(entry.path, text, max_chars=max_chars) if text is not None else []
        if text is not None and not chunks:
            reason = "empty"
        if reason:
            outcome[entry.path] = (0, reason)
            skipped[reason] = skipped.get(reason, 0) + 1
        else:
            labeller = Labeller()  # one per file: a secret repeated in it keeps one label
            fkey = keys[entry.path]
            language = language_of(entry.path) or ""
            for i, chunk in enumerate(chunks):
                body = redact(chunk.text, labeller=labeller)
                symbol = clip_bytes(redact(chunk.symbol, labeller=labeller), 500)
                pending.append(
                    {
                        "id": f"{rkey}:{fkey}:{i}", "repo": repo, "fkey": fkey,
                        "blob": entry.blob, "path": entry.path, "chunk_no": i,
                        "start_line": chunk.start_line, "end_line": chunk.end_line,
                        "language": language, "symbol": symbol, "commit": sha,
                        "content": body, "lexical": lexical(body, extra=f"{entry.path} {symbol}"),
                        "_embed": f"{entry.path}\n{symbol}\n{body}",
                    }
                )  # fmt: skip
            outcome[entry.path] = (len(chunks), "")
            embedded += 1
            if len(pending) >= EMBED_BATCH:
                write()
        if progress is not None:
            progress(done, total, entry.path)
    write()
    if added:
        store.flush("chunks")

    manifest = [[e.path, e.blob, *outcome[e.path]] for e in entries]
    chunk_total = sum(n for _, _, n, _ in manifest)
    store.manifest_write(
        repo=repo, commit=sha, entries=manifest, chunks=chunk_total, model=embedder.model
    )
    report = IndexReport(
        repo=repo, commit=sha, files=len(entries), embedded_files=embedded, reused_files=reused,
        skipped=skipped, chunks_added=added, chunks=chunk_total,
        seconds=time.monotonic() - started,
    )  # fmt: skip
    logger.info(
        "indexed %s@%s: %d files (%d embedded, %d reused), %d chunks added in %.1fs",
        repo, sha[:12], report.files, embedded, reused, added, report.seconds,
    )  # fmt: skip
    return report
