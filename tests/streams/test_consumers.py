"""WebSocket /ws/runs/<id>/ through the real ASGI application (origin check, session
middleware, routing) with WebsocketCommunicator and the in-memory channel layer."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from runs.events import event_record
from runs.models import Run, RunEvent
from tekton_site.asgi import application
from tests.streams.live import redis_down_layers

ORIGIN = (b"origin", b"http://localhost")


def communicator(run_id: int, query: str = "", subprotocols=None) -> WebsocketCommunicator:
    path = f"/ws/runs/{run_id}/" + (f"?{query}" if query else "")
    return WebsocketCommunicator(
        application, path, headers=[ORIGIN, (b"host", b"localhost")], subprotocols=subprotocols
    )


async def receive_until_closed(comm: WebsocketCommunicator, timeout: float = 5.0):
    """(JSON messages, close code) until the server closes the socket."""
    messages = []
    while True:
        output = await comm.receive_output(timeout)
        if output["type"] == "websocket.close":
            return messages, output.get("code")
        messages.append(json.loads(output["text"]))


@pytest.mark.django_db(transaction=True)
async def test_replays_a_finished_run_from_after_and_closes(user, make_run, token_for):
    kinds = ["run.started", "stage.started", "stage.finished", "run.finished"]
    run = await sync_to_async(make_run)(user, kinds, Run.Status.SUCCEEDED)
    token = await sync_to_async(token_for)(user)
    comm = communicator(run.pk, f"token={token}&after=1")

    connected, _ = await comm.connect()
    messages, code = await receive_until_closed(comm)

    assert connected
    assert code == 1000
    assert [(m["seq"], m["kind"]) for m in messages] == [
        (2, "stage.started"),
        (3, "stage.finished"),
        (4, "run.finished"),
    ]
    assert set(messages[0]) == {"seq", "kind", "stage", "payload", "created_at"}
    assert messages[0]["payload"] == {"n": 2}


@pytest.mark.django_db(transaction=True)
async def test_token_as_subprotocol_is_accepted_and_never_echoed(user, make_run, token_for):
    run = await sync_to_async(make_run)(user, ["run.started", "run.failed"], Run.Status.FAILED)
    token = await sync_to_async(token_for)(user)
    comm = communicator(run.pk, subprotocols=["tekton.events", f"bearer.{token}"])

    connected, subprotocol = await comm.connect()
    messages, code = await receive_until_closed(comm)

    assert connected
    assert subprotocol == "tekton.events"
    assert [m["kind"] for m in messages] == ["run.started", "run.failed"]
    assert code == 1000


@pytest.mark.django_db(transaction=True)
async def test_follows_live_events_until_the_final_one(user, make_run, token_for):
    run = await sync_to_async(make_run)(user, ["run.started"])
    token = await sync_to_async(token_for)(user)
    comm = communicator(run.pk, f"token={token}")
    connected, _ = await comm.connect()
    assert connected
    first = await comm.receive_json_from(5)

    record = sync_to_async(event_record)
    for n in range(2, 5):
        await record(run_id=run.pk, kind="stage.progress", stage="plan", payload={"n": n})
    await record(run_id=run.pk, kind="run.cancelled", payload={"status": "cancelled"})
    messages, code = await receive_until_closed(comm)

    assert first["seq"] == 1
    assert [m["seq"] for m in messages] == [2, 3, 4, 5]
    assert [m["payload"].get("n") for m in messages[:3]] == [2, 3, 4]
    assert code == 1000


@pytest.mark.django_db(transaction=True)
async def test_a_socket_stays_open_while_the_channel_layer_is_down(
    user, make_run, token_for, settings
):
    # Redis gone (a restart): the hub reads the database on its poll, as SSE's stream does,
    # and the socket neither fails with 1011 nor misses an event.
    settings.CHANNEL_LAYERS = redis_down_layers()
    run = await sync_to_async(make_run)(user, ["run.started"])
    token = await sync_to_async(token_for)(user)
    comm = communicator(run.pk, f"token={token}")
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_json_from(5))["seq"] == 1

    record = sync_to_async(event_record)
    for n in range(2, 5):
        await record(run_id=run.pk, kind="stage.progress", stage="plan", payload={"n": n})
    await record(run_id=run.pk, kind="run.finished")
    messages, code = await receive_until_closed(comm)

    assert [m["seq"] for m in messages] == [2, 3, 4, 5]
    assert code == 1000


@pytest.mark.django_db(transaction=True)
async def test_events_whose_hints_were_dropped_are_fetched_from_the_database(
    user, make_run, token_for, monkeypatch
):
    from runs import event_hub

    monkeypatch.setattr(event_hub, "POLL_SECONDS", 60)  # only a hint may wake the hub
    run = await sync_to_async(make_run)(user, ["run.started"])
    token = await sync_to_async(token_for)(user)
    comm = communicator(run.pk, f"token={token}")
    await comm.connect()
    assert (await comm.receive_json_from(5))["seq"] == 1

    # Seqs 2 and 3 are committed without a hint (a dropped channel-layer message); the hint
    # of seq 4 reveals the gap, which is read from the database.
    def write_silently():
        for seq in (2, 3):
            RunEvent.objects.create(run_id=run.pk, seq=seq, kind="stage.progress", payload={})
        Run.objects.filter(pk=run.pk).update(event_seq=3)

    await sync_to_async(write_silently)()
    await asyncio.sleep(0.1)
    assert await comm.receive_nothing(0.3)  # nothing arrives without a hint
    await sync_to_async(event_record)(run_id=run.pk, kind="run.finished")
    messages, code = await receive_until_closed(comm)

    assert [m["seq"] for m in messages] == [2, 3, 4]
    assert code == 1000


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("query", ["", "token=tkn_wrong"])
async def test_unauthenticated_socket_is_closed_with_4401(user, make_run, query):
    run = await sync_to_async(make_run)(user, ["run.started"])
    comm = communicator(run.pk, query)
    await comm.connect()
    output = await comm.receive_output(5)
    assert output == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True)
async def test_another_users_or_missing_run_is_closed_with_4404(
    user, django_user_model, make_run, token_for
):
    run = await sync_to_async(make_run)(user, ["run.started"])
    other = await sync_to_async(django_user_model.objects.create_user)(username="eve")
    token = await sync_to_async(token_for)(other)

    codes = []
    for run_id in (run.pk, run.pk + 1000):
        comm = communicator(run_id, f"token={token}")
        await comm.connect()
        codes.append((await comm.receive_output(5)).get("code"))

    assert codes == [4404, 4404]


@pytest.mark.django_db(transaction=True)
async def test_a_bad_resume_point_is_closed_with_4400(user, make_run, token_for):
    run = await sync_to_async(make_run)(user, ["run.started"])
    token = await sync_to_async(token_for)(user)
    comm = communicator(run.pk, f"token={token}&after=minus-one")
    await comm.connect()
    error = await comm.receive_json_from(5)
    closed = await comm.receive_output(5)
    assert "after" in error["error"]
    assert closed["code"] == 4400


async def test_a_foreign_origin_is_refused():
    comm = WebsocketCommunicator(
        application, "/ws/runs/1/", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await comm.connect()
    assert not connected


@pytest.mark.django_db(transaction=True)
async def test_resuming_a_finished_run_at_its_end_closes_without_messages(
    user, make_run, token_for
):
    run = await sync_to_async(make_run)(user, ["run.started", "run.finished"], "succeeded")
    token = await sync_to_async(token_for)(user)
    comm = communicator(run.pk, f"token={token}&after=2")
    await comm.connect()
    messages, code = await receive_until_closed(comm)
    assert messages == []
    assert code == 1000


@pytest.mark.django_db(transaction=True)
async def test_deltas_come_with_deltas_1_between_stored_events_without_a_seq(
    user, make_run, token_for
):
    from runs import event_hub
    from runs.events import deltas_publish

    run = await sync_to_async(make_run)(user, ["run.started"])
    token = await sync_to_async(token_for)(user)
    comm = communicator(run.pk, f"token={token}&deltas=1")
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_json_from(5))["seq"] == 1
    for _ in range(500):  # the socket has joined the run's feed once it replayed
        if event_hub.hub().subscriber_count(run.pk):
            break
        await asyncio.sleep(0.01)
    piece = {"role": "mediator", "round": 2, "call_id": "plan.1.7", "text": "So: ", "offset": 0}
    await sync_to_async(deltas_publish)(run_id=run.pk, items=[("plan", piece)])
    await sync_to_async(Run.objects.filter(pk=run.pk).update)(status=Run.Status.SUCCEEDED)
    await sync_to_async(event_record)(run_id=run.pk, kind="run.finished")
    messages, code = await receive_until_closed(comm)

    assert code == 1000
    assert messages == [
        {"kind": "stage.delta", "stage": "plan", "payload": piece},
        {**messages[1], "seq": 2, "kind": "run.finished"},
    ]
