"""PostgreSQL pooling comes from the environment (tekton_site.db, issue 14 §2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from tekton_site.db import POOL_MAX_SIZE, pool_options, postgres_database

ROOT = Path(__file__).resolve().parents[2]
URL = "postgres://tekton:secret@db.internal:5432/tekton"


def test_it_pools_by_default_with_a_size_that_fits_four_workers_and_the_web():
    database = postgres_database(URL, {})
    pool = database["OPTIONS"]["pool"]
    assert pool["max_size"] == POOL_MAX_SIZE
    assert 5 * pool["max_size"] <= 100 - 10  # 4 workers + daphne, room for commands
    assert pool["min_size"] <= pool["max_size"]
    # Django refuses a pool with persistent connections; broken ones are replaced.
    assert database["CONN_MAX_AGE"] == 0
    assert database["CONN_HEALTH_CHECKS"] is True


def test_it_takes_the_sizes_and_timeout_from_the_environment():
    pool = postgres_database(
        URL,
        {
            "TEKTON_DB_POOL_MAX_SIZE": "5",
            "TEKTON_DB_POOL_MIN_SIZE": "1",
            "TEKTON_DB_POOL_TIMEOUT": "2.5",
        },
    )["OPTIONS"]["pool"]
    assert (pool["min_size"], pool["max_size"], pool["timeout"]) == (1, 5, 2.5)


def test_a_max_below_the_default_min_lowers_the_min():
    assert pool_options({"TEKTON_DB_POOL_MAX_SIZE": "1"})["min_size"] == 1


@pytest.mark.parametrize("off", ["false", "0", "FALSE"])
def test_it_turns_pooling_off(off):
    database = postgres_database(URL, {"TEKTON_DB_POOL": off})
    assert "pool" not in database.get("OPTIONS", {})
    assert database["CONN_MAX_AGE"] == 0


@pytest.mark.parametrize(
    "environ",
    [
        {"TEKTON_DB_POOL": "maybe"},
        {"TEKTON_DB_POOL_MAX_SIZE": "0"},
        {"TEKTON_DB_POOL_MAX_SIZE": "lots"},
        {"TEKTON_DB_POOL_MAX_SIZE": "4", "TEKTON_DB_POOL_MIN_SIZE": "6"},
        {"TEKTON_DB_POOL_TIMEOUT": "0"},
    ],
)
def test_it_refuses_settings_that_cannot_work(environ):
    with pytest.raises(ImproperlyConfigured, match="TEKTON_DB_POOL"):
        pool_options(environ)


def test_settings_module_builds_the_pool_from_database_url(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEKTON_", "DJANGO_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        DATABASE_URL=URL,
        TEKTON_DB_POOL_MAX_SIZE="7",
        TEKTON_DEBUG="true",
        TEKTON_DATA_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="tekton_site.settings",
    )
    code = (
        "from django.conf import settings; d = settings.DATABASES['default']; "
        "import json; print(json.dumps([d['OPTIONS'].get('pool'), d['CONN_MAX_AGE']]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    pool, max_age = json.loads(done.stdout)
    assert pool["max_size"] == 7 and max_age == 0


def test_a_worker_with_many_threads_gets_half_as_many_connections_unless_told():
    assert pool_options({"TEKTON_WORKER_CONCURRENCY": "100"})["max_size"] == 50
    assert pool_options({"TEKTON_WORKER_CONCURRENCY": "8"})["max_size"] == POOL_MAX_SIZE
    both = {"TEKTON_WORKER_CONCURRENCY": "100", "TEKTON_DB_POOL_MAX_SIZE": "20"}
    assert pool_options(both)["max_size"] == 20
