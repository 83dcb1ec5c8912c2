"""The run page's live channel: /ws/runs/<id>/ui/ sends rendered fragments for htmx
out-of-band swaps, resumes after a seq, and closes when the run is over."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from runs import event_hub
from runs.events import event_record
from runs.models import Run, StageRun
from runs.routing import websocket_urlpatterns
from tests.factories import RunFactory, UserFactory
from tests.streams.live import redis_down_layers

app = URLRouter(websocket_urlpatterns)


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch):
    monkeypatch.setattr(event_hub, "POLL_SECONDS", 0.05)


def communicator(run_id, user, after="0", extra=""):
    comm = WebsocketCommunicator(
        app,
        f"/ws/runs/{run_id}/ui/?after={after}{extra}",
        headers=[(b"cookie", b"csrftoken=abcdefghijklmnopqrstuvwxyzABCDEF")],
    )
    comm.scope["user"] = user
    return comm


async def until_closed(comm, timeout=5.0):
    texts = []
    while True:
        out = await comm.receive_output(timeout)
        if out["type"] == "websocket.close":
            return texts, out.get("code")
        texts.append(out["text"])


def _run_with_events(owner, kinds, status):
    run = RunFactory(owner=owner, status=status, stage_from="plan", stage_to="research")
    for kind in kinds:
        event_record(run_id=run.pk, kind=kind, stage="plan", payload={})
    run.refresh_from_db()
    return run


@pytest.mark.django_db(transaction=True)
async def test_finished_run_is_sent_once_then_closed_with_1000():
    user = await sync_to_async(UserFactory)(username="ada")
    run = await sync_to_async(_run_with_events)(
        user, ["run.started", "stage.started", "run.finished"], Run.Status.SUCCEEDED
    )
    comm = communicator(run.pk, user, after="1")
    connected, _ = await comm.connect()
    texts, code = await until_closed(comm)
    assert connected and code == 1000
    assert len(texts) == 1  # two events, coalesced into one update
    html = texts[0]
    assert '<section id="run-header"' in html and 'hx-swap-oob="true"' in html
    assert '<ol id="stage-list"' in html and 'id="stage-row-plan"' in html
    assert f'<span id="run-seq" data-seq="{run.event_seq}"' in html


@pytest.mark.django_db(transaction=True)
async def test_nothing_after_the_last_seq_closes_without_a_message():
    user = await sync_to_async(UserFactory)(username="ada")
    run = await sync_to_async(_run_with_events)(
        user, ["run.started", "run.finished"], Run.Status.SUCCEEDED
    )
    comm = communicator(run.pk, user, after=str(run.event_seq))
    await comm.connect()
    texts, code = await until_closed(comm)
    assert texts == [] and code == 1000


@pytest.mark.django_db(transaction=True)
async def test_live_change_arrives_as_a_fragment():
    user = await sync_to_async(UserFactory)(username="ada")
    run = await sync_to_async(_run_with_events)(user, ["run.started"], Run.Status.RUNNING)
    comm = communicator(run.pk, user, after=str(run.event_seq))
    await comm.connect()
    assert await comm.receive_nothing(0.2)

    def stage_blocks():
        StageRun.objects.filter(run=run, stage="plan").update(status="blocked", reason="quorum")
        Run.objects.filter(pk=run.pk).update(status="blocked")
        event_record(run_id=run.pk, kind="stage.blocked", stage="plan", payload={})

    await sync_to_async(stage_blocks)()
    html = await comm.receive_from(5)
    assert 'class="stage-row step-blocked"' in html
    assert "Waiting for a person" in html
    # The cancel form in the header carries the page's CSRF token.
    assert 'value="abcdefghijklmnopqrstuvwxyzABCDEF"' in html
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_page_socket_stays_open_while_the_channel_layer_is_down(settings):
    # Redis gone (a restart): the hub polls the database, so the page's socket still gets
    # the change and closes with 1000 at the end, not 1011 when Redis went.
    settings.CHANNEL_LAYERS = redis_down_layers()
    user = await sync_to_async(UserFactory)(username="ada")
    run = await sync_to_async(_run_with_events)(user, ["run.started"], Run.Status.RUNNING)
    comm = communicator(run.pk, user, after=str(run.event_seq))
    await comm.connect()

    def run_finishes():
        Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCEEDED)
        event_record(run_id=run.pk, kind="run.finished", payload={})

    await sync_to_async(run_finishes)()
    texts, code = await until_closed(comm)
    assert code == 1000
    assert f'<span id="run-seq" data-seq="{run.event_seq + 1}"' in texts[-1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("who", "code"), [("anonymous", 4401), ("other", 4404)])
async def test_refuses_anonymous_and_other_users(who, code):
    owner = await sync_to_async(UserFactory)(username="ada")
    run = await sync_to_async(_run_with_events)(owner, ["run.started"], Run.Status.RUNNING)
    user = (
        AnonymousUser()
        if who == "anonymous"
        else await sync_to_async(UserFactory)(username="mallory")
    )
    comm = communicator(run.pk, user)
    connected, _ = await comm.connect()
    texts, close = await until_closed(comm)
    assert connected and texts == [] and close == code


@pytest.mark.django_db(transaction=True)
async def test_bad_after_is_refused():
    user = await sync_to_async(UserFactory)(username="ada")
    run = await sync_to_async(_run_with_events)(user, ["run.started"], Run.Status.RUNNING)
    comm = communicator(run.pk, user, after="-3")
    await comm.connect()
    assert (await until_closed(comm))[1] == 4400


@pytest.mark.django_db(transaction=True)
async def test_streamed_text_comes_as_json_beside_the_fragments_with_deltas_1():
    import json

    from runs.events import deltas_publish

    user = await sync_to_async(UserFactory)(username="ada")
    run = await sync_to_async(_run_with_events)(user, ["run.started"], Run.Status.RUNNING)
    comm = communicator(run.pk, user, after="1", extra="&deltas=1")
    connected, _ = await comm.connect()
    assert connected
    for _ in range(500):
        if event_hub.hub().subscriber_count(run.pk):
            break
        await asyncio.sleep(0.01)
    piece = {"role": "skeptic", "round": 0, "call_id": "plan.1.2", "text": "No <b>", "offset": 0}
    await sync_to_async(deltas_publish)(run_id=run.pk, items=[("plan", piece)])
    first = await comm.receive_output(5)
    assert json.loads(first["text"]) == {"kind": "stage.delta", "stage": "plan", "payload": piece}
    await sync_to_async(Run.objects.filter(pk=run.pk).update)(status=Run.Status.SUCCEEDED)
    await sync_to_async(event_record)(run_id=run.pk, kind="run.finished", payload={})
    texts, code = await until_closed(comm)
    assert code == 1000
    assert texts and all(t.lstrip().startswith("<") for t in texts)  # fragments, rendered


def _render_fails_once(monkeypatch):
    """The database neighbour of the render fails its next call, as when the database is
    restarting or the pool hands out no connection in time; later calls reach the database."""
    from django.db import OperationalError

    from runs import views

    real = views.run_live_load
    calls = []

    def run_live_load(run_id):
        calls.append(run_id)
        if len(calls) == 1:
            raise OperationalError(
                'connection to server at "db" failed: password=hunter2-secret is wrong'
            )
        return real(run_id)

    monkeypatch.setattr(views, "run_live_load", run_live_load)
    return calls


def _warnings(caplog):
    return [r for r in caplog.records if r.name == "tekton.runs.streams"]


@pytest.mark.django_db(transaction=True)
async def test_an_update_the_database_cannot_render_is_skipped_and_the_socket_stays_open(
    monkeypatch, caplog
):
    user = await sync_to_async(UserFactory)(username="ada")
    run = await sync_to_async(_run_with_events)(user, ["run.started"], Run.Status.RUNNING)
    calls = _render_fails_once(monkeypatch)
    comm = communicator(run.pk, user, after=str(run.event_seq))
    await comm.connect()
    await sync_to_async(event_record)(run_id=run.pk, kind="stage.started", stage="plan", payload={})
    assert await comm.receive_nothing(0.5)  # that update skipped, the socket not closed
    assert calls == [run.pk]
    [warning] = _warnings(caplog)
    assert warning.levelname == "WARNING" and warning.exc_info is None
    assert "update skipped, database unavailable" in warning.getMessage()
    assert "hunter2-secret" not in warning.getMessage()

    def stage_blocks():
        StageRun.objects.filter(run=run, stage="plan").update(status="blocked", reason="quorum")
        Run.objects.filter(pk=run.pk).update(status="blocked")
        event_record(run_id=run.pk, kind="stage.blocked", stage="plan", payload={})

    await sync_to_async(stage_blocks)()
    html = await comm.receive_from(5)  # the next event renders the whole page
    assert 'class="stage-row step-blocked"' in html
    assert f'<span id="run-seq" data-seq="{run.event_seq + 2}"' in html

    def run_finishes():
        Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCEEDED)
        event_record(run_id=run.pk, kind="run.finished", payload={})

    await sync_to_async(run_finishes)()
    texts, code = await until_closed(comm)
    assert code == 1000 and len(texts) == 1


@pytest.mark.django_db(transaction=True)
async def test_a_final_update_the_database_cannot_render_closes_with_1011_to_reconnect(
    monkeypatch,
):
    # Nothing more will come to render it: the page reconnects and resumes by seq.
    user = await sync_to_async(UserFactory)(username="ada")
    run = await sync_to_async(_run_with_events)(
        user, ["run.started", "run.finished"], Run.Status.SUCCEEDED
    )
    _render_fails_once(monkeypatch)
    comm = communicator(run.pk, user, after="1")
    await comm.connect()
    texts, code = await until_closed(comm)
    assert texts == [] and code == 1011
    again = communicator(run.pk, user, after="1")
    await again.connect()
    texts, code = await until_closed(again)
    assert code == 1000 and f'data-seq="{run.event_seq}"' in texts[0]
