"""One identity per run: an embedded run and a services run sharing a data directory are
both run 1, and neither ever touches the other's files."""

from __future__ import annotations

import json
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.harness import (
    Services,
    Worker,
    make_git_repo,
    manage,
    sha256_file,
    wait_for,
)

pytestmark = pytest.mark.integration


def _files_match(root: Path, rows: list[dict]) -> None:
    for row in rows:
        path = root / row["path"]
        assert path.is_file(), f"missing {path}"
        assert sha256_file(path) == row["sha256"], f"{path} was replaced"


def test_an_embedded_and_a_services_run_1_share_a_data_directory(tmp_path):
    services = Services.create(work_dir=tmp_path / "svc")
    worker = None
    try:
        repo = make_git_repo(services.repo_root / "app")
        data_dir = services.data_dir
        embedded_env = {
            k: v
            for k, v in services.env.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "TEKTON_ARTIFACT_ROOT")
        }
        # The two databases share nothing, so they migrate at once; the worker starts up
        # while the embedded run goes (it never touches the SQLite file): seconds each.
        with ThreadPoolExecutor(2) as pool:
            embedded_migrated = pool.submit(
                manage, ["migrate", "--noinput"], env=embedded_env, timeout=180
            )
            services.migrate()
            assert embedded_migrated.result().returncode == 0
        worker = Worker(env=services.env, queue=services.queue, log_path=tmp_path / "w.log")
        embedded = manage(
            ["tekton", "run", "--goal", "Embedded first", "--repo", str(repo), "--to", "code"],
            env=embedded_env,
            timeout=180,
        )
        assert embedded.returncode == 0, embedded.stderr

        worker.wait_ready(timeout=30)
        goal = f"Services second (it-{uuid.uuid4().hex[:8]})"
        started = manage(
            ["tekton", "run", "--goal", goal, "--repo", str(repo), "--to", "code", "--detach"],
            env=services.env,
            timeout=60,
        )
        assert started.returncode == 0, started.stderr
        wait_for(
            lambda: (
                services.query("SELECT status FROM runs_run WHERE goal = %s", (goal,))[0]["status"]
                == "succeeded"
            ),
            timeout=120,
            interval=0.2,
            what="the services run to succeed",
        )

        with sqlite3.connect(data_dir / "tekton.sqlite3") as db:
            db.row_factory = sqlite3.Row
            (e_run,) = [dict(r) for r in db.execute("SELECT id, uid, config FROM runs_run")]
            e_rows = [dict(r) for r in db.execute("SELECT path, sha256 FROM runs_artifact")]
        (s_run,) = services.query("SELECT id, uid, config FROM runs_run WHERE goal = %s", (goal,))
        s_rows = services.query(
            "SELECT path, sha256 FROM runs_artifact WHERE run_id = %s", (s_run["id"],)
        )

        assert e_run["id"] == s_run["id"] == 1  # the collision this guards against
        assert uuid.UUID(e_run["uid"]) != s_run["uid"]
        e_root = Path(json.loads(e_run["config"])["artifact_root"])
        s_root = Path(s_run["config"]["artifact_root"])
        assert e_root == s_root == data_dir / "artifacts"
        e_dirs = {Path(r["path"]).parent for r in e_rows}
        s_dirs = {Path(r["path"]).parent for r in s_rows}
        assert e_dirs == {Path(f"tekton/run-1-{uuid.UUID(e_run['uid']).hex[:8]}")}
        assert s_dirs == {Path(f"tekton/run-1-{s_run['uid'].hex[:8]}")}
        assert len(e_rows) == len(s_rows) == 6  # plan, research, backlog, code, patch, summary
        _files_match(e_root, e_rows)
        _files_match(s_root, s_rows)
    finally:
        if worker is not None:
            worker.stop()
        services.close()
