"""The client's one-line errors and the stream's resume behaviour, over httpx's
MockTransport (the live server tests cover the real thing)."""

from __future__ import annotations

import socket

import httpx
import pytest

from tui.client import ApiClient, ApiError
from tui.stream import Event, RunStream, Status


def client_answering(status: int, body: dict, headers: dict | None = None) -> ApiClient:
    def handler(request):
        return httpx.Response(status, json=body, headers=headers or {})

    return ApiClient("http://tekton.test", "tkn_x", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "body", "headers", "line"),
    [
        (
            401,
            {"detail": "invalid or revoked token"},
            {},
            "401 not authenticated: invalid or revoked token (check --token or TEKTON_TOKEN)",
        ),
        (404, {"detail": "run 9 not found"}, {}, "404 run 9 not found"),
        (
            429,
            {
                "detail": "you have 5 runs queued or running; the limit is 5",
                "limit": "runs_in_flight",
                "max": 5,
                "retry_after": 30,
            },
            {"Retry-After": "30"},
            "429 limit reached: you have 5 runs queued or running; the limit is 5; try again in 30 s",
        ),
        (
            503,
            {"detail": "no Celery worker answered", "service": "workers"},
            {},
            "503 unavailable: no Celery worker answered (workers)",
        ),
        (
            400,
            {"errors": {"repo": ["repository /x does not exist"], "goal": ["too long"]}},
            {},
            "400 repo: repository /x does not exist; goal: too long",
        ),
    ],
)
async def test_api_errors_are_one_readable_line(status, body, headers, line):
    client = client_answering(status, body, headers)
    with pytest.raises(ApiError) as caught:
        await client.run(9)
    assert str(caught.value) == line
    assert "\n" not in str(caught.value)
    assert caught.value.status == status
    await client.aclose()


async def test_a_server_that_is_not_there_is_one_line_too():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the connection is refused
        client = ApiClient(f"http://127.0.0.1:{port}", "tkn_x")
        with pytest.raises(ApiError) as caught:
            await client.runs()
    assert str(caught.value) == f"cannot reach http://127.0.0.1:{port}: connection refused"
    await client.aclose()


class Dropping(httpx.AsyncByteStream):
    """An SSE body that sends some messages and then breaks like a dead connection."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    async def __aiter__(self):
        for chunk in self.chunks:
            yield chunk
        raise httpx.ReadError("connection reset by peer")


async def test_the_stream_resumes_with_last_event_id_asks_for_deltas_and_says_so():
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        if len(seen) == 1:
            body = (
                b"retry: 10\n\n"
                b'id: 4\nevent: stage.started\ndata: {"seq":4,"kind":"stage.started","stage":"plan","payload":{"attempt":1}}\n\n'
                b'event: stage.delta\ndata: {"kind":"stage.delta","stage":"plan","payload":{"call_id":"c","text":"hi","offset":0}}\n\n'
                b": heartbeat\n\n"
            )
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, stream=Dropping([body])
            )
        if len(seen) == 2:
            body = b'id: 5\nevent: run.finished\ndata: {"seq":5,"kind":"run.finished","stage":"","payload":{}}\n\n'
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        return httpx.Response(204)

    client = ApiClient("http://tekton.test", "tkn_x", transport=httpx.MockTransport(handler))
    items = [item async for item in RunStream(client, 7, after=3)]
    await client.aclose()

    assert seen[0].headers["Last-Event-ID"] == "3"
    assert seen[0].url.params["deltas"] == "1"
    assert seen[0].headers["Accept"] == "text/event-stream"
    assert seen[1].headers["Last-Event-ID"] == "4"  # the delta (no id) did not move it
    events = [i for i in items if isinstance(i, Event)]
    assert [(e.seq, e.kind) for e in events] == [
        (4, "stage.started"),
        (None, "stage.delta"),
        (5, "run.finished"),
    ]
    assert events[1].payload["text"] == "hi"
    statuses = [(s.state, s.text) for s in items if isinstance(s, Status)]
    assert statuses[0] == ("live", "live")
    assert statuses[1][0] == "reconnecting" and "Last-Event-ID 4" in statuses[1][1]
    assert statuses[2] == ("live", "reconnected after a dropped stream; resumed after event 4")
    assert statuses[-1][0] == "ended"
    # The client's own headers were not changed by the stream's requests.
    assert client.http.headers["Accept"] == "application/json"


async def test_the_stream_stops_on_204_and_on_a_refusal_that_will_not_change():
    for status, state in ((204, "ended"), (401, "error"), (404, "error")):

        def handler(request, status=status):
            return httpx.Response(status, json={"detail": "nope"} if status != 204 else None)

        client = ApiClient("http://tekton.test", "tkn_x", transport=httpx.MockTransport(handler))
        items = [item async for item in RunStream(client, 7)]
        await client.aclose()
        assert [i.state for i in items] == [state]
