"""The index's status in the shared memory (runs/sharedmem.py): which commit of a
repository is being indexed now (and how far it got), and the last one indexed with its
counts. Short-lived by design: the index itself (its manifests in Milvus) is the record,
so a lost key means "ask the index", never a wrong answer.

The "being indexed" key doubles as a claim: two workers asked to index the same commit
at once do it once (SET NX with a TTL that each progress update renews, so a worker that
died frees it within INDEXING_TTL_S).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from runs.sharedmem import shared_memory
from swarm.retrieval import IndexReport

INDEXING_TTL_S = 120.0
LAST_TTL_S = 86400.0
PROGRESS_EVERY_S = 1.0


def _repo_key(repo: str) -> str:
    return f"index:{hashlib.sha256(repo.encode()).hexdigest()[:24]}"


def index_claim(*, repo: str, commit: str) -> bool:
    """Mark `commit` of `repo` as being indexed by this caller; False when another worker
    is on it (or was, less than INDEXING_TTL_S ago)."""
    return shared_memory().add_json(
        f"{_repo_key(repo)}:indexing:{commit}",
        {"repo": repo, "commit": commit, "done": 0, "total": None, "started_at": time.time()},
        ttl_s=INDEXING_TTL_S,
    )


def index_progress_recorder(*, repo: str, commit: str) -> Callable[[int, int, str], None]:
    """A `progress(done, total, path)` callback that records how far indexing got (at
    most once a second) and renews the claim."""
    started = time.time()
    last = 0.0

    def progress(done: int, total: int, path: str) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PROGRESS_EVERY_S and done < total:
            return
        last = now
        shared_memory().set_json(
            f"{_repo_key(repo)}:indexing:{commit}",
            {"repo": repo, "commit": commit, "done": done, "total": total, "started_at": started},
            ttl_s=INDEXING_TTL_S,
        )

    return progress


def index_finished(*, repo: str, commit: str, report: IndexReport | None) -> None:
    """Drop the claim; with a report, record it as the repository's last indexed commit."""
    memory = shared_memory()
    memory.delete(f"{_repo_key(repo)}:indexing:{commit}")
    if report is not None:
        memory.set_json(
            f"{_repo_key(repo)}:last",
            {
                "repo": repo,
                "commit": report.commit,
                "files": report.files,
                "chunks": report.chunks,
                "seconds": round(report.seconds, 3),
                "indexed_at": time.time(),
            },
            ttl_s=LAST_TTL_S,
        )


def index_status_get(*, repo: str) -> dict[str, Any]:
    """{"last": what was last indexed (or None), "indexing": [{commit, done, total,
    started_at} of each commit being indexed now]}."""
    memory = shared_memory()
    return {
        "last": memory.get_json(f"{_repo_key(repo)}:last"),
        "indexing": memory.find_json(f"{_repo_key(repo)}:indexing:"),
    }
