from __future__ import annotations

import threading
import time

import pytest

from syschecks.registry import CheckResult, Registry, default_registry
from syschecks.services import checks_run, checks_summary


@pytest.mark.django_db
def test_every_registered_check_reports_and_the_summary_counts_them(trunk_repo):
    results = checks_run(repo_paths=[str(trunk_repo)])
    categories = {r.category for r in results}
    assert {c.category for c in default_registry.checks()} <= categories
    ids = {r.id for r in results}
    assert {"provider.keys", "db", "redis", "celery", "channels", "milvus"} <= ids
    assert f"repository:{trunk_repo}" in ids
    assert len(ids) == len(results), "result ids are unique"
    for r in results:
        assert r.status in ("ok", "warn", "error")
        assert r.detail and "\n" not in r.detail
        if r.status != "ok":
            assert r.hint, f"{r.id} has no hint"
    summary = checks_summary(results)
    assert summary == {s: sum(r.status == s for r in results) for s in ("ok", "warn", "error")}
    assert sum(summary.values()) == len(results)


@pytest.mark.django_db
def test_everything_down_still_answers_within_three_seconds(settings, closed_port):
    dead = f"redis://:hunter2@127.0.0.1:{closed_port}/0"
    settings.REDIS_URL = dead
    settings.CELERY_BROKER_URL = dead
    settings.TEKTON_EXECUTION = "celery"
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [dead]}}
    }
    settings.TEKTON_RETRIEVAL = True
    settings.MILVUS_URI = f"http://127.0.0.1:{closed_port}"
    started = time.monotonic()
    results = checks_run()
    elapsed = time.monotonic() - started
    assert elapsed < 3, f"checks took {elapsed:.2f} s"
    down = {r.id for r in results if r.status == "error"}
    assert {"redis", "celery", "channels", "milvus"} <= down
    assert "hunter2" not in repr(results)


def test_only_filters_by_id_and_category_and_rejects_unknown_names():
    assert {r.id for r in checks_run(only=["redis"])} == {"redis"}
    sandbox_ids = {r.id for r in checks_run(only=["sandbox"])}
    assert sandbox_ids == {
        "sandbox.repo_roots",
        "sandbox.artifact_root",
        "sandbox.user",
        "sandbox.debug",
    }
    with pytest.raises(ValueError, match="unknown check 'postgres'.*known checks: provider.keys"):
        checks_run(only=["postgres"])


def test_a_raising_check_is_an_error_and_the_others_still_run():
    reg = Registry()
    reg.register(id="fine", title="Fine", category="x")(lambda ctx: CheckResult(detail="fine"))

    @reg.register(id="broken", title="Broken", category="x")
    def broken(ctx):
        return {}["missing-key"]

    results = checks_run(registry=reg)
    assert [(r.id, r.status) for r in results] == [("fine", "ok"), ("broken", "error")]
    assert results[1].detail == "the check itself failed: KeyError: 'missing-key'"


def test_checks_run_concurrently():
    reg = Registry()
    for n in range(4):
        reg.register(id=f"slow{n}", title="Slow", category="x")(
            lambda ctx: time.sleep(0.3) or CheckResult(detail="slept")
        )
    started = time.monotonic()
    results = checks_run(registry=reg)
    assert len(results) == 4
    assert time.monotonic() - started < 0.9  # four 0.3 s checks, not 1.2 s in a row


def test_a_hanging_check_times_out_into_an_error():
    release = threading.Event()
    reg = Registry()
    reg.register(id="hangs", title="Hangs", category="x")(
        lambda ctx: release.wait(10) and CheckResult(detail="late")
    )
    reg.register(id="quick", title="Quick", category="x")(lambda ctx: CheckResult(detail="q"))
    try:
        started = time.monotonic()
        results = checks_run(registry=reg, deadline_s=0.3)
        assert time.monotonic() - started < 1.5
    finally:
        release.set()
    assert [(r.id, r.status) for r in results] == [("hangs", "error"), ("quick", "ok")]
    assert "did not finish within 0.3 s" in results[0].detail


def test_summary_always_has_every_status():
    assert checks_summary([]) == {"ok": 0, "warn": 0, "error": 0}
    results = [CheckResult(status="warn"), CheckResult(status="warn"), CheckResult(status="error")]
    assert checks_summary(results) == {"ok": 0, "warn": 2, "error": 1}
