"""Issue 10, section 7: retrieval quality and speed over a corpus no one here wrote.

    uv run python -m bench.retrieval [--corpus rich] [--passes 3] [--mode server] [--no-write]

The installed source of a dependency (rich by default) is copied into a fresh git
repository and indexed through the embedded default: the on-demand milvus-lite server
(`--mode server`) or Milvus Lite inside this process (`--mode inprocess`), with the offline
WordLlama embedder. The query set (`bench/retrieval_queries.json`, committed before the
first measurement) names the file that answers each question. Figures: recall@5 and MRR
(first chunk of the answering file within the top 10) for BM25 only, dense only and
hybrid; index build time and size; incremental re-index time after a one-file change;
hybrid query latency (p50/p95, query embedding included, warm). Targets: hybrid
recall@5 >= 0.8, query p95 <= 50 ms embedded. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import doc_section_write, machine, percentile
from swarm.retrieval import Retrieval, RetrievalConfig, local_server_stop
from tests.integration.harness import PROJECT_DIR

QUERIES_PATH = PROJECT_DIR / "bench" / "retrieval_queries.json"
GIT = ["git", "-c", "user.name=Tekton Bench", "-c", "user.email=bench@tekton.invalid"]


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(
        [*GIT, *args], cwd=repo, check=True, capture_output=True, text=True, env=env
    ).stdout


def corpus_repo(package: str, root: Path) -> tuple[Path, str]:
    """A git repository holding the installed source of `package` under `package/`."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not an installed package")
    source = Path(next(iter(spec.submodule_search_locations)))
    repo = root / "corpus"
    shutil.copytree(source, repo / package, ignore=shutil.ignore_patterns("__pycache__"))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"{package} source")
    from importlib.metadata import version

    return repo, version(package)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _ranks(retrieval: Retrieval, commit: str, queries: list[dict], mode: str) -> list[int | None]:
    """The rank (1-based) of the first chunk of the answering file, None past the top 10."""
    ranks = []
    for item in queries:
        hits = retrieval.search_code(repo="corpus", commit=commit, query=item["q"], k=10, mode=mode)
        if hits.warning:
            raise SystemExit(f"search degraded: {hits.warning}")
        paths = [h.path for h in hits.hits]
        ranks.append(paths.index(item["file"]) + 1 if item["file"] in paths else None)
    return ranks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="rich", help="an installed package")
    parser.add_argument("--passes", type=int, default=3, help="latency passes over the queries")
    parser.add_argument("--mode", choices=("server", "inprocess"), default="server")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    spec = json.loads(QUERIES_PATH.read_text())
    if spec["corpus"] != args.corpus:
        raise SystemExit(f"the query set is for {spec['corpus']}, not {args.corpus}")
    queries = spec["queries"]
    root = Path(tempfile.mkdtemp(prefix="tekton-bench-retrieval-"))
    data_dir = root / "milvus"
    try:
        repo, corpus_version = corpus_repo(args.corpus, root)
        config = (
            RetrievalConfig(data_dir=data_dir)
            if args.mode == "server"
            else RetrievalConfig(milvus_uri=str(data_dir / "inprocess.db"))
        )
        retrieval = Retrieval(config)
        # Connect, start the server and load the model first: those are not index time.
        retrieval.store.ensure(retrieval.embedder)
        retrieval.embedder.embed(["warm up"])

        started = time.perf_counter()
        report = retrieval.index_commit(repo="corpus", path=repo)
        build_s = time.perf_counter() - started
        size = _size(data_dir)

        target = repo / args.corpus / "filesize.py"
        target.write_text(
            target.read_text()
            + "\n\ndef bench_marker(size: int) -> str:\n    return decimal(size)\n"
        )
        _git(repo, "commit", "-q", "-am", "one-file change")
        started = time.perf_counter()
        second = retrieval.index_commit(repo="corpus", path=repo)
        reindex_s = time.perf_counter() - started

        quality = {}
        for mode in ("bm25", "dense", "hybrid"):
            ranks = _ranks(retrieval, second.commit, queries, mode)
            quality[mode] = (
                sum(1 for r in ranks if r is not None and r <= 5) / len(ranks),
                sum(1 / r for r in ranks if r is not None) / len(ranks),
            )
        misses = [
            q["q"]
            for q, r in zip(
                queries, _ranks(retrieval, second.commit, queries, "hybrid"), strict=True
            )
            if r is None or r > 5
        ]

        latencies = []
        for _ in range(args.passes):
            for item in queries:
                t = time.perf_counter()
                retrieval.search_code(repo="corpus", commit=second.commit, query=item["q"], k=5)
                latencies.append((time.perf_counter() - t) * 1000)
        retrieval.close()
    finally:
        if args.mode == "server":
            local_server_stop(data_dir)
        shutil.rmtree(root, ignore_errors=True)

    mode_label = {
        "server": "on-demand milvus-lite server (loopback gRPC)",
        "inprocess": "Milvus Lite inside the process",
    }[args.mode]
    lines = [
        "## Retrieval (issue 10, section 7)",
        "",
        f"`uv run python -m bench.retrieval --corpus {args.corpus} --passes {args.passes} "
        f"--mode {args.mode}` on {machine()}; embedded mode: {mode_label}, WordLlama "
        f"(256 dimensions, offline). Corpus: the installed source of {args.corpus} "
        f"{corpus_version}, copied into a git repository: {report.files} files, "
        f"{report.embedded_files} indexed, {report.chunks} chunks. Query set: "
        f"`bench/retrieval_queries.json`, {len(queries)} questions with the file that answers "
        "each, committed before the first measurement. Targets: hybrid recall@5 >= 0.8, "
        "query p95 <= 50 ms.",
        "",
        "| search | recall@5 | MRR (top 10) |",
        "|---|---:|---:|",
        *(
            f"| {m} | {quality[m][0]:.2f} | {quality[m][1]:.2f} |"
            for m in ("bm25", "dense", "hybrid")
        ),
        "",
        "| figure | value |",
        "|---|---:|",
        f"| index build ({report.chunks} chunks) | {build_s:.1f} s |",
        f"| index size on disk | {size / 1e6:.1f} MB |",
        f"| re-index after a one-file change ({second.embedded_files} file, "
        f"{second.chunks_added} chunks embedded) | {reindex_s:.2f} s |",
        f"| hybrid query p50 ({len(latencies)} queries) | {percentile(latencies, 50):.1f} ms |",
        f"| hybrid query p95 | {percentile(latencies, 95):.1f} ms |",
    ]
    if misses:
        lines += ["", "Hybrid misses (answering file not in the top 5): " + "; ".join(misses)]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        doc_section_write("retrieval", body)


if __name__ == "__main__":
    main()
