"""A worker process for the two-process tests: index a repository, wait for the other
worker, search, print one JSON line.

    python -m tests.swarm.retrieval._worker '{"repo": ..., "path": ..., "query": ...,
        "search_repo": ..., "data_dir": ... | "milvus_uri": ..., "ready": FILE, "wait_for": FILE}'
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from swarm.retrieval import Retrieval, RetrievalConfig


def main(raw: str) -> None:
    job = json.loads(raw)
    retrieval = Retrieval(
        RetrievalConfig(
            namespace=job.get("namespace", "tekton"),
            data_dir=Path(job["data_dir"]) if job.get("data_dir") else None,
            milvus_uri=job.get("milvus_uri"),
        )
    )
    report = retrieval.index_commit(repo=job["repo"], path=job["path"])
    Path(job["ready"]).write_text(report.commit)
    deadline = time.monotonic() + 120
    while not Path(job["wait_for"]).exists():
        if time.monotonic() > deadline:
            raise SystemExit("the other worker never finished indexing")
        time.sleep(0.05)
    other_commit = Path(job["wait_for"]).read_text()
    result = retrieval.search_code(
        repo=job["search_repo"], commit=other_commit, query=job["query"], k=3
    )
    print(
        json.dumps(
            {
                "commit": report.commit,
                "embedded": report.embedded_files,
                "paths": [h.path for h in result.hits],
                "warning": result.warning,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
