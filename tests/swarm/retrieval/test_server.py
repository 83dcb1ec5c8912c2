"""Several OS processes on one index: the on-demand milvus-lite server (embedded mode) and
a milvus-lite server started by hand behind MILVUS_URI (services mode)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swarm.retrieval import (
    Retrieval,
    RetrievalConfig,
    local_server_ensure,
    local_server_info,
    local_server_stop,
)
from tests.integration.harness import PROJECT_DIR
from tests.swarm.conftest import make_repo
from tests.swarm.retrieval.conftest import TOPICS

A_FILES = {p: TOPICS[p] for p in ("auth/tokens.py", "billing/invoice.py")}
B_FILES = {p: TOPICS[p] for p in ("storage/s3.py", "web/router.js")}


def _workers(jobs: list[dict]) -> list[dict]:
    """Start every worker at once, wait for all, return what each printed."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.swarm.retrieval._worker", json.dumps(job)],
            cwd=PROJECT_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for job in jobs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _milvus_lite_pids(data_dir: Path) -> list[int]:
    """Processes serving `data_dir`, found by their command line."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"milvus_lite" in b" ".join(cmdline) and str(data_dir).encode() in b" ".join(cmdline):
            pids.append(int(proc.name))
    return pids


def test_two_processes_start_one_server_and_share_its_index(tmp_path):
    data_dir = tmp_path / "milvus"
    repo_a = make_repo(tmp_path / "a", A_FILES)
    repo_b = make_repo(tmp_path / "b", B_FILES)
    common = {"data_dir": str(data_dir)}
    here = Retrieval(RetrievalConfig(data_dir=data_dir, retry_after_s=0))
    try:
        a, b = _workers(
            [
                {**common, "repo": "a", "path": str(repo_a), "search_repo": "b",
                 "query": "upload a file to the bucket",
                 "ready": str(tmp_path / "a.done"), "wait_for": str(tmp_path / "b.done")},
                {**common, "repo": "b", "path": str(repo_b), "search_repo": "a",
                 "query": "revoke an api token",
                 "ready": str(tmp_path / "b.done"), "wait_for": str(tmp_path / "a.done")},
            ]
        )  # fmt: skip
        # Each found what the other indexed: one index behind both.
        assert a["paths"][0] == "storage/s3.py" and a["warning"] is None
        assert b["paths"][0] == "auth/tokens.py" and b["warning"] is None
        server = local_server_info(data_dir)
        assert server is not None and _milvus_lite_pids(data_dir) == [server.pid]
        # The server outlived the workers that started it; this process uses it too.
        assert local_server_ensure(data_dir) == server.uri
        query = {"repo": "a", "commit": a["commit"], "query": "apply a discount"}
        assert here.search_code(**query).hits[0].path == "billing/invoice.py"
        assert here.status().server_pid == server.pid

        # A server that died degrades the next search, and the one after starts it again.
        local_server_stop(data_dir)
        lost = here.search_code(**query)
        assert lost.hits == [] and lost.warning.startswith("Milvus unavailable")
        back = here.search_code(**query)
        assert back.warning is None and back.hits[0].path == "billing/invoice.py"
        assert local_server_info(data_dir).pid != server.pid
    finally:
        here.close()
        stopped = local_server_stop(data_dir)
    assert stopped and local_server_info(data_dir) is None and _milvus_lite_pids(data_dir) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def milvus_server(tmp_path):
    """A milvus-lite server started by hand, as README shows, behind a MILVUS_URI."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "server"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "milvus-lite server did not start"
            time.sleep(0.1)
    yield proc, f"http://127.0.0.1:{port}"
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=15)


def test_workers_behind_milvus_uri_index_one_commit_once(tmp_path, milvus_server):
    proc, uri = milvus_server
    repo = make_repo(tmp_path / "topics", TOPICS)
    common = {"milvus_uri": uri, "repo": "topics", "path": str(repo), "search_repo": "topics"}
    a, b = _workers(
        [
            {**common, "query": "retry with exponential backoff",
             "ready": str(tmp_path / "a.done"), "wait_for": str(tmp_path / "b.done")},
            {**common, "query": "how do I roll back a bad release",
             "ready": str(tmp_path / "b.done"), "wait_for": str(tmp_path / "a.done")},
        ]
    )  # fmt: skip
    assert a["commit"] == b["commit"]
    assert a["paths"][0] == "util/retry.go" and b["paths"][0] == "docs/deploy.md"

    here = Retrieval(RetrievalConfig(milvus_uri=uri, timeout_s=3))
    (status,) = here.status().repos
    # Both indexed the same commit at the same time: rows are keyed by content, so no
    # chunk is stored twice.
    assert status.chunk_rows == status.chunks and status.commits_indexed == 1

    proc.terminate()
    proc.wait(timeout=15)
    gone = here.search_code(repo="topics", commit=a["commit"], query="retry")
    assert gone.hits == [] and gone.warning.startswith("Milvus unavailable")
