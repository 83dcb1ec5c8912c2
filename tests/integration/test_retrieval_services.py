"""Retrieval in services mode, for real: one `milvus-lite server` subprocess (what
MILVUS_URI points a deployment at) shared by the command line and two Celery worker
processes over PostgreSQL and Redis. One worker's run blocks and the lesson its block
teaches is written into the shared index; a second worker, started after the first
stopped, runs the next run of the same repository and its stages are given that lesson
and the repository's chunks."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Services, manage, wait_for
from tests.streams.live import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("milvus")
    port = free_port()
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data / "db"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip

    def answers() -> bool:
        assert proc.poll() is None, (data / "server.log").read_text()[-2000:]
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(answers, timeout=60, interval=0.2, what="the milvus-lite server")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _run_id(services: Services, goal: str) -> int:
    (row,) = services.query("SELECT id FROM runs_run WHERE goal = %s", (goal,))
    return row["id"]


def _status(services: Services, run_id: int) -> str:
    return services.query("SELECT status FROM runs_run WHERE id = %s", (run_id,))[0]["status"]


def _context(services: Services, run_id: int, stage: str) -> dict:
    rows = services.query(
        "SELECT payload FROM runs_runevent WHERE run_id = %s AND stage = %s "
        "AND kind = 'stage.context' ORDER BY seq DESC LIMIT 1",
        (run_id, stage),
    )
    assert rows, f"run {run_id} recorded no context for {stage}"
    return rows[0]["payload"]


def test_two_workers_share_one_index_a_lesson_written_by_one_reaches_the_others_run(
    services: Services, git_repo: Path, milvus_uri: str, start_worker
):
    env = {
        **services.env,
        "TEKTON_RETRIEVAL": "true",
        "MILVUS_URI": milvus_uri,
        "TEKTON_MILVUS_NAMESPACE": f"it{uuid.uuid4().hex[:8]}",
    }
    retrieval = {k: env[k] for k in ("TEKTON_RETRIEVAL", "MILVUS_URI", "TEKTON_MILVUS_NAMESPACE")}
    indexed = manage(["tekton", "index", str(git_repo)], env=env, timeout=180)
    assert indexed.returncode == 0, indexed.stderr

    first = start_worker(extra_env=retrieval)
    goal = f"Add coupon codes to invoices [offline:block=plan] ({uuid.uuid4().hex[:6]})"
    started = manage(
        ["tekton", "run", "--goal", goal, "--repo", str(git_repo), "--to", "plan", "--detach"],
        env=env,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    blocked = _run_id(services, goal)
    wait_for(lambda: _status(services, blocked) == "blocked", timeout=180, what="the block")
    # The lesson is written by a task on the workers' queue once the block is recorded.
    wait_for(
        lambda: re.search(r"lesson_write_task\[[^\]]+\] succeeded", first.log_text()),
        timeout=60,
        what="the lesson task",
    )
    reason = services.query(
        "SELECT payload FROM runs_runevent WHERE run_id = %s AND kind = 'stage.blocked'",
        (blocked,),
    )[0]["payload"]["reason"]
    first.stop()

    second = start_worker(extra_env=retrieval)
    later = f"Apply a discount to an invoice ({uuid.uuid4().hex[:6]})"
    started = manage(
        ["tekton", "run", "--goal", later, "--repo", str(git_repo), "--to", "code", "--detach"],
        env=env,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    run_id = _run_id(services, later)
    deadline = time.monotonic() + 180
    while _status(services, run_id) not in ("succeeded", "failed", "blocked", "cancelled"):
        assert time.monotonic() < deadline, second.log_text()[-3000:]
        time.sleep(0.3)
    assert _status(services, run_id) == "succeeded", second.log_text()[-3000:]

    plan = _context(services, run_id, "plan")
    assert plan["warnings"] == [], plan["warnings"]
    lessons = plan["lessons"]
    assert any(
        row["source"] == f"run {blocked} / plan" and reason[:40] in row["text"] for row in lessons
    ), lessons
    code = _context(services, run_id, "code")
    paths = {chunk["path"] for chunk in code["chunks"]}
    assert "app/core.py" in paths, code
    # Both workers did the work they were given: one blocked run, one finished run.
    assert "stage_execute" in first.log_text() and "stage_execute" in second.log_text()
