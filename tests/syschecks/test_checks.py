from __future__ import annotations

import sqlite3
import stat
import time
import uuid
from pathlib import Path

import pytest

from syschecks import checks
from syschecks.checks import PROVIDER_KEY_VARIABLES
from syschecks.services import checks_run
from tests.syschecks.conftest import git


def by_id(results):
    return {r.id: r for r in results}


# --- providers -------------------------------------------------------------------------------

FAKE_ANTHROPIC = "sk-ant-api03-FAKEKEYrecognisable0123456789"
# Not shaped like any known key, so redaction would not hide it: only never reading it does.
FAKE_PORTKEY = "pk-plainvalue-XYZZY-4242-recognisable"


@pytest.mark.django_db
def test_provider_keys_report_set_or_missing_and_never_the_value(monkeypatch):
    monkeypatch.delenv("TEKTON_LLM_BACKEND", raising=False)
    for variable in PROVIDER_KEY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_ANTHROPIC)
    monkeypatch.setenv("PORTKEY_API_KEY", FAKE_PORTKEY)

    results = checks_run()  # every check: the value must appear in none of them
    found = by_id(results)
    assert found["provider.anthropic"].detail == "ANTHROPIC_API_KEY is set"
    assert found["provider.portkey"].detail == "PORTKEY_API_KEY is set"
    assert "not set" in found["provider.openai"].detail
    assert "OPENAI_API_KEY" in found["provider.openai"].hint
    assert "not set" in found["provider.openrouter"].detail
    assert found["provider.keys"].status == "ok"
    assert found["provider.keys"].detail.startswith(f"2 of {len(PROVIDER_KEY_VARIABLES)}")

    everything = repr([r.as_dict() for r in results])
    for secret in (FAKE_ANTHROPIC, FAKE_PORTKEY):
        # Not the value, nor any recognisable slice of it.
        for start in range(0, len(secret) - 8):
            assert secret[start : start + 8] not in everything


@pytest.mark.django_db
def test_a_profile_in_use_whose_models_cannot_be_served_is_an_error_naming_the_roles(
    monkeypatch,
):
    monkeypatch.delenv("TEKTON_LLM_BACKEND", raising=False)
    for variable in PROVIDER_KEY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_ANTHROPIC)  # a key: no offline fallback
    found = by_id(checks_run(only=["provider.profiles"]))
    row = found["provider.profile:diamond-v5"]
    assert row.status == "error"
    assert "plan.proponent (openai/gpt-4o)" in row.detail
    assert "code.proponent (x-ai/grok-2-mini)" in row.detail
    assert "OPENAI_API_KEY" in row.detail and "review.skeptic" not in row.detail
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-" + "0" * 64)  # a gateway serves all
    assert (
        by_id(checks_run(only=["provider.profiles"]))["provider.profile:diamond-v5"].status == "ok"
    )


def test_no_provider_key_warns_that_offline_answers_everything(monkeypatch):
    monkeypatch.delenv("TEKTON_LLM_BACKEND", raising=False)
    for variable in PROVIDER_KEY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "   ")  # blank counts as missing
    found = by_id(checks_run(only=["provider.keys"]))
    assert found["provider.keys"].status == "warn"
    assert "offline backend answers every model" in found["provider.keys"].detail
    assert "ANTHROPIC_API_KEY" in found["provider.keys"].hint
    assert "not set" in found["provider.openai"].detail


def test_forced_offline_backend_is_ok_without_keys(monkeypatch):
    for variable in PROVIDER_KEY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TEKTON_LLM_BACKEND", "offline")
    (summary, *rows) = checks_run(only=["provider.keys"])
    assert summary.status == "ok"
    assert summary.detail.startswith("TEKTON_LLM_BACKEND is offline: keys are not used (0 of")
    assert {r.id for r in rows} >= {f"provider.{b}" for b in PROVIDER_KEY_VARIABLES.values()}


def test_router_key_variables_are_all_reported():
    router = pytest.importorskip("swarm.providers.router")
    reported = {r.title for r in checks_run(only=["provider.keys"])[1:]}
    assert set(router.KNOWN_KEY_ENVS) <= reported


def test_cli_tools_found_on_path_or_warned(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    codex = bin_dir / "codex"
    codex.write_text("#!/bin/sh\nexit 0\n")
    codex.chmod(codex.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    found = by_id(checks_run(only=["provider.cli"]))
    assert found["provider.codex-cli"].status == "ok"
    assert str(codex) in found["provider.codex-cli"].detail
    assert found["provider.claude-cli"].status == "warn"
    assert "not found on PATH" in found["provider.claude-cli"].detail
    assert "claude" in found["provider.claude-cli"].hint


# --- database ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_database_answers_select_1_with_vendor_and_version():
    (result,) = checks_run(only=["db"])
    assert result.status == "ok"
    assert f"SQLite {sqlite3.sqlite_version} (embedded mode)" in result.detail


@pytest.mark.django_db
def test_sqlite_with_celery_workers_warns(settings):
    settings.TEKTON_EXECUTION = "celery"
    result = checks.check_database(checks.CheckContext())
    assert result.status == "warn"
    assert "DATABASE_URL" in result.hint


def test_database_failure_is_an_error_without_the_password(settings, monkeypatch):
    from django.db import connection

    monkeypatch.setitem(settings.DATABASES["default"], "PASSWORD", "s3cretpw99")

    def refuse():
        raise RuntimeError('connection failed: password "s3cretpw99" rejected')

    monkeypatch.setattr(connection, "cursor", refuse)
    result = checks.check_database(checks.CheckContext())
    assert result.status == "error"
    assert "connection failed" in result.detail
    assert "s3cretpw99" not in result.detail
    assert "DATABASE_URL" in result.hint


# --- redis -----------------------------------------------------------------------------------


def test_redis_not_configured_is_ok_in_embedded_mode(settings):
    settings.REDIS_URL = ""
    (result,) = checks_run(only=["redis"])
    assert result.status == "ok"
    assert "embedded mode, not used" in result.detail


def test_redis_down_is_an_error_with_host_port_and_no_password(settings, closed_port):
    settings.REDIS_URL = f"redis://:hunter2@127.0.0.1:{closed_port}/0"
    started = time.monotonic()
    (result,) = checks_run(only=["redis"])
    assert time.monotonic() - started < 3
    assert result.status == "error"
    assert f"127.0.0.1:{closed_port}" in result.detail
    assert "hunter2" not in repr(result)
    assert "REDIS_URL" in result.hint


def test_redis_up_answers_ping(settings, local_redis):
    settings.REDIS_URL = f"{local_redis}/0"
    (result,) = checks_run(only=["redis"])
    assert result.status == "ok", result.detail
    assert "answered PING at redis://127.0.0.1:6379/0" in result.detail


def test_urls_lose_their_credentials():
    assert (
        checks.safe_url("redis://user:hunter2@cache.local:6380/2") == "redis://cache.local:6380/2"
    )
    assert checks.safe_url("rediss://:pw@[::1]:6379/0") == "rediss://[::1]:6379/0"
    assert checks.safe_url("unix:///run/redis.sock") == "unix:///run/redis.sock"
    assert checks.safe_url("not a url") == "(unparseable URL)"
    assert checks.safe_url("redis://h:notaport/0") == "(unparseable URL)"


# --- celery ----------------------------------------------------------------------------------


def test_celery_inline_mode_is_ok(settings):
    settings.TEKTON_EXECUTION = "inline"
    (result,) = checks_run(only=["celery"])
    assert result.status == "ok"
    assert "stages run in-process" in result.detail


def test_celery_broker_down_is_an_error_fast(settings, closed_port):
    settings.TEKTON_EXECUTION = "celery"
    settings.CELERY_BROKER_URL = f"redis://:hunter2@127.0.0.1:{closed_port}/0"
    started = time.monotonic()
    (result,) = checks_run(only=["celery"])
    assert time.monotonic() - started < 3
    assert result.status == "error"
    assert f"cannot reach the broker at redis://127.0.0.1:{closed_port}/0" in result.detail
    assert "hunter2" not in repr(result)


def test_celery_with_no_worker_says_how_to_start_one(settings, local_redis):
    settings.TEKTON_EXECUTION = "celery"
    # A queue of this test alone: a worker left running on this Redis (another test run's,
    # or a developer's on the default queue) answers a ping but consumes another queue.
    settings.TEKTON_QUEUE = f"tekton-test-{uuid.uuid4().hex[:8]}"
    settings.CELERY_BROKER_URL = f"{local_redis}/14"
    started = time.monotonic()
    (result,) = checks_run(only=["celery"])
    assert time.monotonic() - started < 3
    assert result.status == "error"
    assert "no worker consumes the queue" in result.detail
    assert "celery -A tekton_site worker" in result.hint


# --- channel layer ---------------------------------------------------------------------------


def test_in_memory_channel_layer_round_trip(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    (result,) = checks_run(only=["channels"])
    assert result.status == "ok", result.detail
    assert "InMemoryChannelLayer round trip ok" in result.detail


def test_redis_channel_layer_round_trip(settings, local_redis):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"{local_redis}/14"], "prefix": "tekton-syschecks-test"},
        }
    }
    # Twice: each run has its own event loop, and the second must not trip on the first's.
    for _ in range(2):
        (result,) = checks_run(only=["channels"])
        assert result.status == "ok", result.detail
        assert "RedisChannelLayer round trip ok" in result.detail


def test_channel_layer_on_a_dead_redis_is_an_error_fast(settings, closed_port):
    settings.REDIS_URL = ""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://:hunter2@127.0.0.1:{closed_port}/0"]},
        }
    }
    started = time.monotonic()
    (result,) = checks_run(only=["channels"])
    assert time.monotonic() - started < 3
    assert result.status == "error"
    assert "RedisChannelLayer" in result.detail
    assert "hunter2" not in repr(result)


def test_no_channel_layer_is_an_error(settings):
    settings.CHANNEL_LAYERS = {}
    (result,) = checks_run(only=["channels"])
    assert result.status == "error"
    assert "no channel layer" in result.detail


# --- milvus ----------------------------------------------------------------------------------


def test_milvus_off_warns_about_the_history_fallback(settings):
    settings.TEKTON_RETRIEVAL = False
    (result,) = checks_run(only=["milvus"])
    assert result.status == "warn"
    assert "TEKTON_RETRIEVAL=false" in result.detail and "run history" in result.detail
    assert "TEKTON_RETRIEVAL" in result.hint


def test_milvus_on_demand_not_running_is_not_started_by_the_check(settings, tmp_path):
    settings.TEKTON_RETRIEVAL = True
    settings.MILVUS_URI = None
    settings.TEKTON_MILVUS_DIR = tmp_path / "milvus"
    (result,) = checks_run(only=["milvus"])
    assert result.status == "ok"
    assert "not running" in result.detail
    assert not (tmp_path / "milvus").exists()


def test_milvus_server_unreachable_names_host_and_port(settings, closed_port):
    settings.TEKTON_RETRIEVAL = True
    settings.MILVUS_URI = f"http://127.0.0.1:{closed_port}"
    (result,) = checks_run(only=["milvus"])
    assert result.status == "error"
    assert f"127.0.0.1:{closed_port}" in result.detail


def test_milvus_uri_with_a_bad_port_is_an_error(settings):
    settings.TEKTON_RETRIEVAL = True
    settings.MILVUS_URI = "http://user:pw@milvus.local:port"
    (result,) = checks_run(only=["milvus"])
    assert result.status == "error"
    assert "MILVUS_URI is not a valid URL" in result.detail
    assert "pw" not in result.detail


def test_milvus_lite_path_writable_or_not(settings, tmp_path):
    settings.TEKTON_RETRIEVAL = True
    settings.MILVUS_URI = str(tmp_path / "milvus.db")
    (result,) = checks_run(only=["milvus"])
    assert result.status == "ok"
    assert "will be created" in result.detail

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings.MILVUS_URI = str(blocker / "milvus.db")
    (result,) = checks_run(only=["milvus"])
    assert result.status == "error"
    assert "not writable" in result.detail


# --- repositories ----------------------------------------------------------------------------


def test_clean_repository_reports_its_branch(trunk_repo):
    (result,) = checks_run(only=["repository"], repo_paths=[str(trunk_repo)])
    assert result.id == f"repository:{trunk_repo}"
    assert result.status == "ok"
    assert result.detail == f"{trunk_repo.resolve()} on trunk: clean"


def test_dirty_repository_warns_with_the_changed_file_count(trunk_repo):
    (trunk_repo / "main.py").write_text("print('changed')\n")
    (trunk_repo / "new.txt").write_text("untracked\n")
    (result,) = checks_run(only=["repository"], repo_paths=[str(trunk_repo)])
    assert result.status == "warn"
    assert "dirty, 2 changed file(s)" in result.detail
    assert "Commit or stash" in result.hint


def test_detached_head_is_named(trunk_repo):
    sha = git(trunk_repo, "rev-parse", "--short", "HEAD").strip()
    git(trunk_repo, "checkout", "-q", "--detach")
    (result,) = checks_run(only=["repository"], repo_paths=[str(trunk_repo)])
    assert result.status == "ok"
    assert f"on detached at {sha}: clean" in result.detail


def test_missing_repository_is_an_error(repo_root):
    missing = repo_root / "nowhere"
    (result,) = checks_run(only=["repository"], repo_paths=[str(missing)])
    assert result.status == "error"
    assert result.detail == f"{missing} does not exist"


def test_repository_outside_the_roots_is_an_error(tmp_path, settings):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    git(elsewhere, "init", "-q")
    settings.TEKTON_REPO_ROOTS = [(tmp_path / "allowed").resolve()]
    (result,) = checks_run(only=["repository"], repo_paths=[str(elsewhere)])
    assert result.status == "error"
    assert "outside the allowed repository roots" in result.detail
    assert "TEKTON_REPO_ROOTS" in result.hint


def test_folder_that_is_not_git_is_an_error(repo_root):
    plain = repo_root / "plain"
    plain.mkdir()
    (result,) = checks_run(only=["repository"], repo_paths=[str(plain)])
    assert result.status == "error"
    assert "is not a git repository" in result.detail
    assert "git init" in result.hint


def test_one_result_per_repository_and_none_without_paths(trunk_repo, repo_root):
    other = repo_root / "other"
    results = checks_run(only=["repositories"], repo_paths=[str(trunk_repo), str(other)])
    assert [r.status for r in results] == ["ok", "error"]
    assert checks_run(only=["repositories"]) == []


# --- sandbox guards --------------------------------------------------------------------------


def sandbox(**kwargs):
    return by_id(checks_run(only=["sandbox"], **kwargs))


def test_repo_roots_empty_warns_in_services_mode(settings):
    settings.TEKTON_REPO_ROOTS = []
    settings.TEKTON_EXECUTION = "celery"
    assert sandbox()["sandbox.repo_roots"].status == "warn"
    settings.TEKTON_EXECUTION = "inline"
    assert sandbox()["sandbox.repo_roots"].status == "ok"


def test_repo_roots_including_slash_warns(settings, tmp_path):
    settings.TEKTON_REPO_ROOTS = [tmp_path, Path("/")]
    result = sandbox()["sandbox.repo_roots"]
    assert result.status == "warn"
    assert "includes /" in result.detail


def test_repo_roots_that_exist_are_ok(settings, tmp_path):
    settings.TEKTON_REPO_ROOTS = [tmp_path]
    result = sandbox()["sandbox.repo_roots"]
    assert result.status == "ok"
    assert str(tmp_path.resolve()) in result.detail
    settings.TEKTON_REPO_ROOTS = [tmp_path / "gone"]
    assert sandbox()["sandbox.repo_roots"].status == "warn"


def test_artifact_root_inside_the_data_dir_is_ok(settings, tmp_path):
    settings.TEKTON_DATA_DIR = tmp_path
    settings.TEKTON_ARTIFACT_ROOT = tmp_path / "artifacts"
    (tmp_path / "artifacts").mkdir(exist_ok=True)
    result = sandbox()["sandbox.artifact_root"]
    assert result.status == "ok"
    assert list((tmp_path / "artifacts").iterdir()) == []  # the probe cleaned up


def test_artifact_root_outside_the_data_dir_warns(settings, tmp_path):
    settings.TEKTON_DATA_DIR = tmp_path / "data"
    settings.TEKTON_ARTIFACT_ROOT = tmp_path / "elsewhere"
    result = sandbox()["sandbox.artifact_root"]
    assert result.status == "warn"
    assert "outside the data directory" in result.detail


def test_artifact_root_that_cannot_be_written_is_an_error(settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    settings.TEKTON_DATA_DIR = tmp_path
    settings.TEKTON_ARTIFACT_ROOT = blocker / "artifacts"
    result = sandbox()["sandbox.artifact_root"]
    assert result.status == "error"
    assert "not writable" in result.detail
    blocker_root = tmp_path / "root-is-a-file"
    blocker_root.write_text("x")
    settings.TEKTON_ARTIFACT_ROOT = blocker_root
    assert "is not a directory" in sandbox()["sandbox.artifact_root"].detail


@pytest.mark.parametrize(
    ("euid", "execution", "debug", "status"),
    [
        (1000, "celery", False, "ok"),
        (0, "inline", False, "warn"),
        (0, "celery", True, "warn"),
        (0, "celery", False, "error"),
    ],
)
def test_running_as_root(settings, monkeypatch, euid, execution, debug, status):
    monkeypatch.setattr(checks.os, "geteuid", lambda: euid)
    settings.TEKTON_EXECUTION = execution
    settings.DEBUG = debug
    result = sandbox()["sandbox.user"]
    assert result.status == status
    if status != "ok":
        assert "unprivileged user" in result.hint


def test_debug_on_in_services_mode_warns(settings):
    settings.DEBUG = True
    settings.TEKTON_EXECUTION = "celery"
    assert sandbox()["sandbox.debug"].status == "warn"
    settings.TEKTON_EXECUTION = "inline"
    assert sandbox()["sandbox.debug"].status == "ok"
    settings.DEBUG = False
    assert sandbox()["sandbox.debug"].detail == "DEBUG is off"


# --- the command sandbox and the workspaces ----------------------------------------------------


def workspaces(**kwargs):
    return by_id(checks_run(only=["workspaces"], **kwargs))


def test_command_sandbox_says_whether_bwrap_works_here(settings):
    from swarm.sandbox import sandbox_probe

    ok, why = sandbox_probe()
    result = workspaces()["workspaces.sandbox"]
    assert result.status == ("ok" if ok else "error") and why in result.detail
    settings.TEKTON_SANDBOX = "none"
    result = workspaces()["workspaces.sandbox"]
    assert result.status == "warn" and "unisolated" in result.detail


def test_workspace_disk_reports_free_space_and_use(settings, tmp_path, monkeypatch):
    import shutil as shutil_module

    root = tmp_path / "ws"
    (root / "tekton--run-1-aaaaaaaa").mkdir(parents=True)
    (root / "tekton--run-1-aaaaaaaa" / "f.txt").write_text("x" * 10_000)
    settings.TEKTON_WORKSPACE_ROOT = root
    result = workspaces()["workspaces.disk"]
    assert result.status in ("ok", "warn") and "1 workspace(s) and 0 spare(s)" in result.detail
    real = shutil_module.disk_usage
    monkeypatch.setattr(
        "syschecks.checks.shutil.disk_usage",
        lambda p: real(p)._replace(free=100 * 1024**2),
    )
    result = workspaces()["workspaces.disk"]
    assert result.status == "error" and "100.0 MiB free" in result.detail
    assert "tekton workspaces prune" in result.hint


# --- provider rate limits ---------------------------------------------------------------------


def test_rate_limits_not_configured_is_ok(settings):
    settings.TEKTON_RATE_LIMITS = {}
    (result,) = checks_run(only=["rate_limits"])
    assert result.status == "ok"
    assert "no limits configured" in result.detail


def test_rate_limits_show_the_limits_and_what_each_shared_bucket_holds(settings, local_redis):
    import uuid

    import redis

    from runs.sharedmem import rate_limiter_get, shared_memory

    settings.REDIS_URL = f"{local_redis}/15"
    settings.TEKTON_REDIS_PREFIX = f"tekton_t_{uuid.uuid4().hex[:8]}:"
    settings.TEKTON_RATE_LIMITS = {"anthropic/*": {"rpm": 50, "tpm": 400000}}
    limiter = rate_limiter_get()
    limit = limiter.limit_for(backend="anthropic", base_url=None, model="anthropic/claude-opus-4.1")
    try:
        assert limiter.buckets.take("anthropic:anthropic/claude-opus-4.1", limit, 10000) == 0.0
        results = checks_run(only=["rate_limits"])
    finally:
        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(match=settings.TEKTON_REDIS_PREFIX + "*"))
        client.delete(*keys)
        shared_memory().close()
    main, bucket = results
    assert main.status == "ok"
    assert (
        "anthropic/*: 50 requests/min, 400000 tokens/min (shared by every worker in Redis"
        in main.detail
    )
    assert bucket.id == "rate_limits.bucket:anthropic:anthropic/claude-opus-4.1"
    import re

    # What the draw took, refilled a little since (50 a minute, 400000 a minute).
    match = re.fullmatch(r"holds (\d+)/50 requests, (\d+)/400000 tokens", bucket.detail)
    assert match, bucket.detail
    assert 49 <= int(match[1]) <= 50 and 390000 <= int(match[2]) < 400000
