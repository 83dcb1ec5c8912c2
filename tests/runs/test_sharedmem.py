"""The shared memory (runs/sharedmem.py) on the real Redis and in-process: token buckets
that several threads and processes draw from never give more than the limit, keys with
TTLs, a Redis outage that degrades instead of raising; and the repository facts shared
per commit."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from runs.sharedmem import LocalMemory, RedisMemory
from swarm.providers.limits import RateLimit

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_url() -> str:
    import redis

    from tests.integration.harness import services_redis_url

    url = services_redis_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("TEKTON_REQUIRE_SERVICES") == "1":
            pytest.fail(f"TEKTON_REQUIRE_SERVICES=1 but Redis at {url} is unreachable: {exc}")
        pytest.skip(f"Redis at {url} is unreachable: {exc}")
    return url


@pytest.fixture
def prefix(redis_url):
    import redis

    prefix = f"tekton_t_{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["redis", "local"])
def memory(request):
    if request.param == "local":
        yield LocalMemory("t:")
        return
    url = request.getfixturevalue("redis_url")
    mem = RedisMemory(url, request.getfixturevalue("prefix"))
    yield mem
    mem.close()


def test_bucket_gives_its_capacity_then_asks_to_wait_without_taking(memory):
    limit = RateLimit(requests=3, tokens=1000, period_s=60.0)
    assert [memory.buckets.take("p:m", limit, 100) for _ in range(3)] == [0.0] * 3
    wait = memory.buckets.take("p:m", limit, 100)
    assert 19.0 < wait <= 20.0  # one request refills in 20 s
    (fill,) = memory.buckets.fill()
    assert fill.key == "p:m"
    assert fill.requests == pytest.approx(0.0, abs=0.01)
    assert fill.tokens == pytest.approx(700.0, abs=1.0)  # the refused call took nothing
    assert fill.limit == limit


def test_tokens_wait_for_the_refill_and_a_too_big_call_takes_the_whole_bucket(memory):
    limit = RateLimit(tokens=600, period_s=60.0)  # 10 tokens a second
    assert memory.buckets.take("p:m", limit, 550) == 0.0
    assert 14.0 < memory.buckets.take("p:m", limit, 200) <= 15.0  # 150 missing: 15 s
    assert memory.buckets.take("p:m2", limit, 10**6) == 0.0  # clamped to the capacity


def test_bucket_refills_with_time(memory):
    limit = RateLimit(requests=10, period_s=0.5)  # one request every 50 ms
    for _ in range(10):
        assert memory.buckets.take("p:m", limit, 0) == 0.0
    assert memory.buckets.take("p:m", limit, 0) > 0
    time.sleep(0.12)
    assert memory.buckets.take("p:m", limit, 0) == 0.0


def test_threads_drawing_from_one_bucket_never_exceed_the_limit(memory):
    limit = RateLimit(requests=20, tokens=2000, period_s=1.0)
    granted = []
    stop = time.monotonic() + 0.6
    start = time.monotonic()

    def draw() -> None:
        while time.monotonic() < stop:
            if memory.buckets.take("p:m", limit, 50) == 0.0:
                granted.append(time.monotonic())

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    # A full bucket (20 requests, 2000 tokens = 40 calls' worth) plus the refill; the
    # tighter dimension (requests) decides.
    assert len(granted) <= 20 + 20 * elapsed + 1
    assert len(granted) >= 20 + 20 * 0.6 * 0.5  # and it does give what it has


def test_processes_drawing_from_one_redis_bucket_never_exceed_the_limit(redis_url, prefix):
    script = textwrap.dedent(
        """
        import sys, time
        from runs.sharedmem import RedisMemory
        from swarm.providers.limits import RateLimit
        mem = RedisMemory(sys.argv[1], sys.argv[2])
        limit = RateLimit(requests=30, period_s=1.0)
        print("ready", flush=True)
        sys.stdin.readline()
        n, stop = 0, time.monotonic() + 0.8
        while time.monotonic() < stop:
            if mem.buckets.take("p:m", limit, 0) == 0.0:
                n += 1
        print(n, flush=True)
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, redis_url, prefix],
            cwd=PROJECT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    start = time.monotonic()
    for p in procs:  # both draw at once
        p.stdin.write("go\n")
        p.stdin.flush()
    counts = [int(p.communicate(timeout=30)[0]) for p in procs]
    elapsed = time.monotonic() - start
    assert sum(counts) <= 30 + 30 * elapsed + 1
    assert sum(counts) >= 30  # at least the full bucket went out
    assert all(counts)  # each process got some


def test_memory_keeps_json_with_a_ttl_and_add_claims_once(memory):
    memory.set_json("facts:x", {"a": [1, 2]}, ttl_s=0.15)
    assert memory.get_json("facts:x") == {"a": [1, 2]}
    assert memory.add_json("index:x", {"by": 1}, ttl_s=0.15) is True
    assert memory.add_json("index:x", {"by": 2}, ttl_s=0.15) is False
    assert memory.find_json("index:") == [{"by": 1}]
    time.sleep(0.2)
    assert memory.get_json("facts:x") is None
    assert memory.add_json("index:x", {"by": 2}, ttl_s=5) is True
    memory.delete("index:x")
    assert memory.get_json("index:x") is None


def test_every_redis_key_has_a_ttl(redis_url, prefix):
    import redis

    mem = RedisMemory(redis_url, prefix)
    mem.set_json("facts:x", {}, ttl_s=60)
    mem.add_json("index:y", {}, ttl_s=60)
    mem.buckets.take("p:m", RateLimit(requests=5), 0)
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    assert len(keys) == 3
    assert all(0 < client.pttl(k) <= 61_000 for k in keys)


def test_a_redis_that_is_down_degrades_to_misses_and_no_limiting(caplog):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mem = RedisMemory(f"redis://127.0.0.1:{port}/0", "x:")
    with caplog.at_level(logging.WARNING, logger="tekton.runs.sharedmem"):
        assert mem.buckets.take("p:m", RateLimit(requests=1), 0) == 0.0
        assert mem.buckets.take("p:m", RateLimit(requests=1), 0) == 0.0
        assert mem.get_json("facts:x") is None
        mem.set_json("facts:x", {}, ttl_s=1)
        assert mem.add_json("index:x", {}, ttl_s=1) is True
        assert mem.buckets.fill() == []
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1  # once a minute, not once a call


@pytest.mark.django_db
def test_repository_facts_are_shared_per_commit(git_repo, tekton_settings, monkeypatch):
    from runs import stage_inputs
    from runs.models import Run
    from runs.sharedmem import shared_memory
    from swarm.repo import repo_facts

    head = repo_facts(git_repo).head
    calls = []

    def counting(path):
        calls.append(path)
        return repo_facts(path)

    monkeypatch.setattr(stage_inputs, "repo_facts", counting)
    one = Run(pk=90001, repo_path=str(git_repo), base_commit=head)
    two = Run(pk=90002, repo_path=str(git_repo), base_commit=head)
    first = stage_inputs.run_repo_facts(one)
    second = stage_inputs.run_repo_facts(two)  # another run (worker) at the same commit
    assert second == first
    assert len(calls) == 1
    assert shared_memory().get_json(stage_inputs._facts_key(str(git_repo), head))["head"] == head

    # A dirty checkout's uncommitted changes are its own moment: never shared.
    shared_memory().delete(stage_inputs._facts_key(str(git_repo), head))
    (git_repo / "README.md").write_text("edited, not committed\n")
    three = Run(pk=90003, repo_path=str(git_repo), base_commit=head)
    assert stage_inputs.run_repo_facts(three).is_dirty
    assert shared_memory().get_json(stage_inputs._facts_key(str(git_repo), head)) is None


def test_index_status_claims_a_commit_once_records_progress_and_the_last_commit(settings):
    from runs import index_status
    from swarm.retrieval import IndexReport

    settings.REDIS_URL = ""  # the in-process equivalent: the same calls
    repo = f"/srv/{uuid.uuid4().hex}"
    assert index_status.index_claim(repo=repo, commit="c1") is True
    assert index_status.index_claim(repo=repo, commit="c1") is False  # another worker
    index_status.index_progress_recorder(repo=repo, commit="c1")(3, 3, "a.py")
    (job,) = index_status.index_status_get(repo=repo)["indexing"]
    assert (job["commit"], job["done"], job["total"]) == ("c1", 3, 3)
    report = IndexReport(
        repo=repo, commit="c1", files=3, embedded_files=3, reused_files=0, chunks=7
    )
    index_status.index_finished(repo=repo, commit="c1", report=report)
    status = index_status.index_status_get(repo=repo)
    assert status["indexing"] == []
    assert (status["last"]["commit"], status["last"]["chunks"]) == ("c1", 7)
    assert index_status.index_claim(repo=repo, commit="c1") is True  # free again
