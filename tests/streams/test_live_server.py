"""A real run followed over a real ASGI server (daphne) in services mode: PostgreSQL, Redis
(channel layer and broker) and a real Celery worker, all subprocesses. Clients disconnect
at random points (fixed seed) and resume; what they reassemble must equal the database's
events, in order, with no gap and no duplicate.

Unreachable PostgreSQL or Redis skips with the reason, or fails under
TEKTON_REQUIRE_SERVICES=1 (the `services` fixture of tests/integration decides).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.integration.conftest import git_repo, it_env, services, start_worker  # noqa: F401
from tests.integration.harness import Services, wait_for
from tests.streams.live import AsgiServer, SseParser, user_token

pytestmark = pytest.mark.integration

FINAL = ("run.finished", "run.failed", "run.cancelled")
SEED = 20240611


@pytest.fixture
def server_env(services: Services) -> dict[str, str]:  # noqa: F811
    # 50 ms per offline LLM call makes the run last a few seconds, long enough to follow.
    return {
        **services.env,
        "TEKTON_OFFLINE_LATENCY_MS": "50",
        "TEKTON_SSE_HEARTBEAT_SECONDS": "1",
    }


@pytest.fixture
def asgi_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[AsgiServer]:
    server = AsgiServer(env=server_env, log_path=tmp_path / "daphne.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _db_events(services: Services, run_id: int) -> list[tuple[int, str]]:  # noqa: F811
    rows = services.query(
        "SELECT seq, kind FROM runs_runevent WHERE run_id = %s ORDER BY seq", (run_id,)
    )
    return [(r["seq"], r["kind"]) for r in rows]


async def follow_sse(server: AsgiServer, token: str, run_id: int, rng: random.Random) -> dict:
    """Follow the run's SSE stream, dropping the connection after a random number of events
    and resuming with Last-Event-ID, until the stream ends after the final event."""
    received: list[tuple[int, str]] = []
    connections = 0
    stalls = 0
    url = f"{server.base_url}/api/runs/{run_id}/events"
    # Heartbeats come every second, so 10 s of silence is a stalled connection; like a
    # browser's EventSource the client then reconnects with Last-Event-ID (and says so).
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
        while True:
            headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
            if received:
                headers["Last-Event-ID"] = str(received[-1][0])
            drop_after = rng.randint(1, 12)
            ended = False
            connections += 1
            try:
                async with client.stream("GET", url, headers=headers) as response:
                    if response.status_code == 204:
                        return {
                            "events": received,
                            "connections": connections,
                            "stalls": stalls,
                            "ended_by": 204,
                        }
                    assert response.status_code == 200, await response.aread()
                    assert response.headers["content-type"].startswith("text/event-stream")
                    parser = SseParser()
                    got = 0
                    async for line in response.aiter_lines():
                        message = parser.feed(line)
                        if message is None:
                            continue
                        seq, kind, data = message
                        assert json.loads(data)["seq"] == seq
                        received.append((seq, kind))
                        got += 1
                        if got >= drop_after:
                            break  # leaves the block: the connection is dropped mid-stream
                    else:
                        ended = True  # the server ended the stream
            except httpx.ReadTimeout:
                stalls += 1
                print(f"SSE connection {connections} stalled after seq {received[-1:]}")
                print(server.log_text()[-3000:])
                continue
            if ended:
                assert received and received[-1][1] in FINAL
                return {
                    "events": received,
                    "connections": connections,
                    "stalls": stalls,
                    "ended_by": "end",
                }


async def follow_ws(server: AsgiServer, token: str, run_id: int, rng: random.Random) -> dict:
    """The same over the WebSocket, resuming with ?after=."""
    received: list[tuple[int, str]] = []
    connections = 0
    while True:
        after = received[-1][0] if received else 0
        uri = f"{server.ws_url}/ws/runs/{run_id}/?token={token}&after={after}"
        drop_after = rng.randint(1, 12)
        connections += 1
        async with websockets.connect(uri, origin=server.base_url) as ws:
            got = 0
            async for text in ws:  # ends quietly when the server closes normally
                event = json.loads(text)
                received.append((event["seq"], event["kind"]))
                got += 1
                if got >= drop_after:
                    break  # leaves the block: the client closes mid-stream
            else:
                assert ws.close_code == 1000, ws.close_code
                assert received and received[-1][1] in FINAL
                return {"events": received, "connections": connections}


async def _follow_both(server, token, run_id):
    return await asyncio.gather(
        follow_sse(server, token, run_id, random.Random(SEED)),
        follow_ws(server, token, run_id, random.Random(SEED + 1)),
    )


def test_run_followed_over_sse_and_websocket_with_random_disconnects(
    services: Services,  # noqa: F811
    asgi_server: AsgiServer,
    start_worker,  # noqa: F811
    git_repo: Path,  # noqa: F811
    server_env: dict[str, str],
):
    start_worker(extra_env={"TEKTON_OFFLINE_LATENCY_MS": "50"})
    token = user_token(server_env, f"sse-{uuid.uuid4().hex[:6]}")
    created = httpx.post(
        f"{asgi_server.base_url}/api/runs/",
        json={"goal": "Add a /healthz endpoint to the service", "repo": str(git_repo)},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]

    sse, ws = asyncio.run(asyncio.wait_for(_follow_both(asgi_server, token, run_id), 180))

    expected = _db_events(services, run_id)
    assert expected[-1][1] in FINAL
    assert len(expected) > 30  # a real nine-stage run, not a trivial one
    assert [seq for seq, _ in expected] == list(range(1, len(expected) + 1))
    assert sse["events"] == expected
    assert ws["events"] == expected
    # The random drops really happened, so resumption was exercised.
    assert sse["connections"] > 3
    assert sse["stalls"] <= 1, f"{sse['stalls']} SSE connections stalled"
    assert ws["connections"] > 3

    # A reconnect to the finished run with nothing left to send: 204, and over the socket
    # an immediate normal close without a message.
    again = httpx.get(
        f"{asgi_server.base_url}/api/runs/{run_id}/events",
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "text/event-stream",
            "Last-Event-ID": str(expected[-1][0]),
        },
        timeout=10,
    )
    assert again.status_code == 204

    async def ws_after_end():
        uri = f"{asgi_server.ws_url}/ws/runs/{run_id}/?token={token}&after={expected[-1][0]}"
        async with websockets.connect(uri, origin=asgi_server.base_url) as sock:
            with pytest.raises(websockets.ConnectionClosedOK):
                await asyncio.wait_for(sock.recv(), 10)
            return sock.close_code

    assert asyncio.run(ws_after_end()) == 1000


def test_streams_refuse_missing_credentials_and_other_users(
    services: Services,  # noqa: F811
    asgi_server: AsgiServer,
    server_env: dict[str, str],
):
    owner = user_token(server_env, f"own-{uuid.uuid4().hex[:6]}")
    other = user_token(server_env, f"oth-{uuid.uuid4().hex[:6]}")
    wait_for(lambda: services.query("SELECT 1 AS ok"), timeout=5, what="database")
    listed = httpx.get(
        f"{asgi_server.base_url}/api/runs/", headers={"Authorization": f"Bearer {owner}"}
    )
    assert listed.status_code == 200
    url = f"{asgi_server.base_url}/api/runs/999999/events"
    assert httpx.get(url, headers={"Accept": "text/event-stream"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {other}"}).status_code == 404

    async def ws_code(query: str) -> int | None:
        uri = f"{asgi_server.ws_url}/ws/runs/999999/{query}"
        async with websockets.connect(uri, origin=asgi_server.base_url) as sock:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(sock.recv(), 10)
            return sock.close_code

    assert asyncio.run(ws_code("")) == 4401
    assert asyncio.run(ws_code(f"?token={other}")) == 4404
