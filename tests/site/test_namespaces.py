"""Two Tekton installations with different TEKTON_NAMESPACEs on one Redis (issue 10 §4):
every shared name derives from the namespace unless its own variable is set, and with
those names neither installation sees the other's Redis keys, channel-layer groups or
Celery queue. The settings are each installation's own (a fresh interpreter each); the
data goes through the real Redis. Index collections on one Milvus are kept apart by the
same names (tests/swarm/retrieval/test_index.py::test_namespaces_on_one_milvus_never_see_each_other
stores and searches them)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runs.sharedmem import RedisMemory
from swarm.providers.limits import RateLimit
from swarm.retrieval.store import collection_prefix

PROJECT = Path(__file__).resolve().parents[2]

_PRINT_NAMES = """
import json
from tekton_site import settings as s
print(json.dumps({
    "queue": s.CELERY_TASK_DEFAULT_QUEUE,
    "broker_prefix": s.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"],
    "redis_prefix": s.TEKTON_REDIS_PREFIX,
    "channel_prefix": s.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
    "milvus_namespace": s.TEKTON_MILVUS_NAMESPACE,
    "artifact_root": str(s.TEKTON_ARTIFACT_ROOT),
}))
"""


def _names(tmp_path: Path, redis_url: str, **env: str) -> dict[str, str]:
    """The shared names of an installation configured by `env`, as its settings derive them."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TEKTON_", "CELERY_"))}
    base.pop("DATABASE_URL", None)
    base.update(REDIS_URL=redis_url, TEKTON_DATA_DIR=str(tmp_path / "data"), **env)
    proc = subprocess.run(
        [sys.executable, "-c", _PRINT_NAMES], cwd=PROJECT, env=base, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def redis_url(redis_url_module) -> str:
    return redis_url_module


def _redis_url() -> str:
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


@pytest.fixture(scope="module")
def redis_url_module() -> str:
    return _redis_url()


@pytest.fixture(scope="module")
def installations(tmp_path_factory, redis_url_module):
    """Namespaces alpha_<t> and beta_<t> (fresh per test run, so parallel runs and stale
    keys never meet), plus alpha with every name set explicitly; their keys deleted after."""
    import redis

    redis_url = redis_url_module
    tmp_path = tmp_path_factory.mktemp("installations")
    token = uuid.uuid4().hex[:8]
    alpha, beta = f"alpha_{token}", f"beta_{token}"
    with ThreadPoolExecutor(3) as pool:
        a, b, explicit = pool.map(
            lambda env: _names(tmp_path, redis_url, **env),
            [
                {"TEKTON_NAMESPACE": alpha},
                {"TEKTON_NAMESPACE": beta},
                {
                    "TEKTON_NAMESPACE": alpha,
                    "TEKTON_QUEUE": f"q_{token}",
                    "TEKTON_REDIS_PREFIX": f"r_{token}:",
                    "TEKTON_CHANNEL_PREFIX": f"c_{token}",
                    "TEKTON_MILVUS_NAMESPACE": f"m_{token}",
                    "TEKTON_ARTIFACT_ROOT": str(tmp_path / "elsewhere"),
                },
            ],
        )
    yield {"alpha": alpha, "beta": beta, "token": token, "tmp": tmp_path}, a, b, explicit
    client = redis.Redis.from_url(redis_url)
    for prefix in (a["redis_prefix"], b["redis_prefix"]):
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    client.close()


def test_every_shared_name_derives_from_the_namespace_unless_set(installations):
    ns, a, b, explicit = installations
    tmp_path = ns["tmp"]
    assert a == {
        "queue": ns["alpha"],
        "broker_prefix": f"{ns['alpha']}:",
        "redis_prefix": f"{ns['alpha']}:",
        "channel_prefix": f"{ns['alpha']}:asgi",
        "milvus_namespace": ns["alpha"],
        "artifact_root": str((tmp_path / "data" / "artifacts").resolve()),
    }
    assert all(a[k] != b[k] for k in a if k != "artifact_root")
    # One data directory may hold both: each run's folder is <root>/<namespace>/run-...
    assert a["artifact_root"] == b["artifact_root"]
    assert collection_prefix(a["milvus_namespace"]) != collection_prefix(b["milvus_namespace"])
    t = ns["token"]
    assert explicit == {
        "queue": f"q_{t}",
        "broker_prefix": f"r_{t}:",
        "redis_prefix": f"r_{t}:",
        "channel_prefix": f"c_{t}",
        "milvus_namespace": f"m_{t}",
        "artifact_root": str((tmp_path / "elsewhere").resolve()),
    }


def test_shared_memory_keys_and_buckets_stay_in_their_namespace(installations, redis_url):
    import redis

    _, a, b, _ = installations
    mem_a = RedisMemory(redis_url, a["redis_prefix"])
    mem_b = RedisMemory(redis_url, b["redis_prefix"])
    mem_a.set_json("facts:repo:abc", {"head": "abc"}, ttl_s=60)
    one_a_minute = RateLimit(requests=1)
    assert mem_a.buckets.take("openai:openai/gpt-4o", one_a_minute, 0) == 0.0
    assert mem_a.buckets.take("openai:openai/gpt-4o", one_a_minute, 0) > 0  # alpha's is empty
    assert mem_b.get_json("facts:repo:abc") is None
    assert mem_b.buckets.fill() == []
    assert mem_b.buckets.take("openai:openai/gpt-4o", one_a_minute, 0) == 0.0  # beta's is full
    client = redis.Redis.from_url(redis_url)
    a_keys = {k.decode() for k in client.scan_iter(match=a["redis_prefix"] + "*")}
    b_keys = {k.decode() for k in client.scan_iter(match=b["redis_prefix"] + "*")}
    assert len(a_keys) == 2 and len(b_keys) == 1 and not a_keys & b_keys


def test_channel_groups_of_one_namespace_never_reach_the_other(installations, redis_url, settings):
    from channels_redis.core import RedisChannelLayer

    from runs.events import run_group

    ns, a, b, _ = installations
    settings.TEKTON_NAMESPACE = ns["alpha"]
    group_a = run_group(1)
    settings.TEKTON_NAMESPACE = ns["beta"]
    group_b = run_group(1)
    assert group_a.startswith(ns["alpha"]) and group_b.startswith(ns["beta"])

    async def scenario() -> tuple[dict, list]:
        layer_a = RedisChannelLayer(hosts=[redis_url], prefix=a["channel_prefix"])
        layer_b = RedisChannelLayer(hosts=[redis_url], prefix=b["channel_prefix"])
        chan_a, chan_b = await layer_a.new_channel(), await layer_b.new_channel()
        await layer_a.group_add(group_a, chan_a)
        await layer_b.group_add(group_b, chan_b)
        # Even a group of the same name on the other prefix hears nothing.
        await layer_b.group_add(group_a, chan_b)
        await layer_a.group_send(group_a, {"type": "run.event", "seq": 1})
        got_a = await asyncio.wait_for(layer_a.receive(chan_a), 5)
        got_b = []
        try:
            got_b.append(await asyncio.wait_for(layer_b.receive(chan_b), 0.3))
        except TimeoutError:
            pass
        for layer in (layer_a, layer_b):
            await layer.flush()
            await layer.close_pools()
        return got_a, got_b

    got_a, got_b = asyncio.run(scenario())
    assert got_a["seq"] == 1
    assert got_b == []


def test_a_task_queued_in_one_namespace_is_never_consumed_by_the_other(installations, redis_url):
    from kombu import Connection

    _, a, b, _ = installations

    def connection(names):
        return Connection(redis_url, transport_options={"global_keyprefix": names["broker_prefix"]})

    with connection(a) as conn_a:
        queue_a = conn_a.SimpleQueue(a["queue"])
        queue_a.put({"task": "runs.tasks.stage_execute_task", "args": [1]})
        # kombu keeps a queue as the list <prefix><queue>: beta's workers pop beta's
        # queue under beta's prefix, where nothing arrived (nor under alpha's queue name).
        import redis

        client = redis.Redis.from_url(redis_url)
        assert client.llen(a["broker_prefix"] + a["queue"]) == 1
        assert client.exists(b["broker_prefix"] + b["queue"]) == 0
        assert client.exists(b["broker_prefix"] + a["queue"]) == 0
        message = queue_a.get(timeout=5)
        message.ack()
        assert message.payload["args"] == [1]
        queue_a.close()
        client.close()
