from __future__ import annotations

import logging
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

from runs import events
from runs.events import event_publish, event_record, events_record, run_group
from runs.models import Run, RunEvent
from tests.factories import RunFactory

SECRET = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123"


def _subscribed(*groups: str):
    """The in-process layer and a new channel of it in `groups`, as a hub reads them."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    for group in groups:
        async_to_sync(layer.group_add)(group, channel)
    return layer, channel


@pytest.mark.django_db(transaction=True)
def test_seq_is_gapless_under_concurrent_writers():
    run = RunFactory(with_stages=False)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(stage: str) -> None:
        try:
            start.wait(timeout=5)
            for i in range(15):
                event_record(run_id=run.pk, kind="stage.progress", stage=stage, payload={"i": i})
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=writer, args=(s,)) for s in ("review", "threat", "plan", "code")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    seqs = sorted(RunEvent.objects.filter(run=run).values_list("seq", flat=True))
    assert seqs == list(range(1, 61))
    run.refresh_from_db()
    assert run.event_seq == 60


@pytest.mark.django_db
def test_event_is_published_on_commit(django_capture_on_commit_callbacks):
    run = RunFactory(with_stages=False)
    layer, channel = _subscribed(run_group(run.pk))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        event = event_record(
            run_id=run.pk, kind="stage.started", stage="plan", payload={"attempt": 1}
        )
    assert len(callbacks) == 1  # nothing sent before the commit
    callbacks[0]()
    message = async_to_sync(layer.receive)(channel)
    assert message["type"] == "run.event"
    assert (message["run_id"], message["seq"], message["kind"], message["stage"]) == (
        run.pk,
        event.seq,
        "stage.started",
        "plan",
    )
    assert message["payload"] == {"attempt": 1}
    assert message["created_at"] == event.created_at.isoformat()


@pytest.mark.django_db
def test_event_payload_is_redacted():
    run = RunFactory(with_stages=False)
    event = event_record(
        run_id=run.pk,
        kind="stage.progress",
        payload={"answer": {"text": f"use {SECRET} and mail bob@example.com"}, "n": 3},
    )
    stored = RunEvent.objects.get(pk=event.pk).payload
    assert SECRET not in str(stored) and "bob@example.com" not in str(stored)
    assert "[API_KEY#1]" in stored["answer"]["text"] and stored["n"] == 3


@pytest.mark.django_db
def test_event_record_for_missing_run_raises():
    with pytest.raises(Run.DoesNotExist):
        event_record(run_id=987654, kind="run.started")


@pytest.mark.django_db
def test_publish_failure_is_logged_redacted_never_raised(monkeypatch, caplog):
    run = RunFactory(with_stages=False)
    event = event_record(run_id=run.pk, kind="run.started")

    class BrokenLayer:
        async def group_send(self, group, message):
            raise ConnectionError(f"redis auth failed with {SECRET}")

    monkeypatch.setattr(events, "get_channel_layer", lambda: BrokenLayer())
    with caplog.at_level(logging.WARNING, logger="tekton.runs.events"):
        event_publish(event)
    assert "could not publish" in caplog.text
    assert SECRET not in caplog.text


@pytest.mark.django_db
def test_a_batch_of_events_is_one_hint_per_run(django_capture_on_commit_callbacks):
    # Subscribers read the rows after a hint's seq themselves: the batch's last is enough.
    run = RunFactory(with_stages=False)
    layer, channel = _subscribed(run_group(run.pk))
    with django_capture_on_commit_callbacks(execute=True):
        rows = events_record(
            run_id=run.pk, items=[("stage.progress", "plan", {"i": i}) for i in range(3)]
        )
    (message,) = _drained(layer, channel)
    assert message["seq"] == rows[-1].seq == 3
    assert message["payload"] == {"i": 2}


@pytest.mark.django_db
def test_publishing_reuses_one_loop_and_keeps_order(monkeypatch):
    # From a thread with no event loop (the recording thread, a Celery pool thread), each
    # send used to start a thread and a loop of its own; now they share one per process.
    run = RunFactory(with_stages=False)
    layer, channel = _subscribed(run_group(run.pk))
    rows = [
        event_record(run_id=run.pk, kind="stage.progress", stage="plan", payload={"i": i})
        for i in range(3)
    ]  # not sent yet: the test's transaction never commits
    starts: list[str] = []
    start = threading.Thread.start

    def counted(self):
        starts.append(self.name)
        return start(self)

    monkeypatch.setattr(threading.Thread, "start", counted)
    for row in rows * 10:
        event_publish(row)
    monkeypatch.setattr(threading.Thread, "start", start)
    assert len(starts) <= 1  # the publishing loop's thread, the first time in the process
    got = [async_to_sync(layer.receive)(channel)["seq"] for _ in range(30)]
    assert got == [r.seq for r in rows] * 10


@pytest.mark.django_db
def test_deferred_events_are_written_at_the_end_in_order_with_one_seq_bump(
    django_assert_num_queries, django_capture_on_commit_callbacks
):
    run = RunFactory(with_stages=False)
    other = RunFactory(with_stages=False)
    with django_capture_on_commit_callbacks(execute=True):
        with events.events_deferred():
            assert event_record(run_id=run.pk, kind="stage.started", stage="plan") is None
            with events.events_deferred():  # a nested block joins the outer one
                event_record(run_id=other.pk, kind="run.started")
                events.events_record(run_id=run.pk, items=[("stage.progress", "plan", {"n": 1})])
            assert not RunEvent.objects.exists()  # nothing written before the block ends
            event_record(run_id=run.pk, kind="stage.finished", stage="plan")
    kinds = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", "kind"))
    assert kinds == [(1, "stage.started"), (2, "stage.progress"), (3, "stage.finished")]
    assert list(RunEvent.objects.filter(run=other).values_list("seq", "kind")) == [
        (1, "run.started")
    ]
    # Outside a block each event is written at once again.
    with django_assert_num_queries(4):  # savepoint, seq bump, insert, release
        event_record(run_id=run.pk, kind="stage.progress", stage="plan")


@pytest.mark.django_db
def test_deferred_events_are_dropped_when_the_block_raises():
    run = RunFactory(with_stages=False)
    with pytest.raises(RuntimeError), events.events_deferred():
        event_record(run_id=run.pk, kind="stage.started", stage="plan")
        raise RuntimeError("the transaction is undone")
    assert not RunEvent.objects.exists()
    event_record(run_id=run.pk, kind="stage.started", stage="plan")
    assert RunEvent.objects.get().seq == 1


def _piece(call_id: str, text: str) -> dict:
    return {"role": "skeptic", "round": 1, "call_id": call_id, "text": text, "offset": 0}


def _drained(layer, channel) -> list[dict]:
    got = []
    while layer.channels.get(channel) and not layer.channels[channel].empty():
        got.append(async_to_sync(layer.receive)(channel))
    return got


@pytest.mark.django_db
def test_deltas_of_many_runs_wait_out_a_send_and_then_go_as_one_message():
    # While one send is on its way the next one gathers, every run's: at 100 streaming
    # runs one message per run per flush overran the hub that receives them.
    import asyncio

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.deltas_group(), channel)
    held, release = threading.Event(), threading.Event()

    async def a_send_on_its_way():
        async with events._send_lock():
            held.set()
            await asyncio.get_running_loop().run_in_executor(None, release.wait)

    busy = asyncio.run_coroutine_threadsafe(a_send_on_its_way(), events._publish_loop())
    assert held.wait(5)
    for run_id in (11, 12, 13):
        events.deltas_publish(run_id=run_id, items=[("plan", _piece(f"plan.1.{run_id}", "No "))])
    assert _drained(layer, channel) == []  # nothing overtakes the send on its way
    release.set()
    busy.result(5)
    row = event_record(run_id=RunFactory(with_stages=False).pk, kind="stage.progress")
    event_publish(row)  # returns once what was queued before it has gone

    (message,) = _drained(layer, channel)
    by_run = events.deltas_unpack(message)
    assert list(by_run) == [11, 12, 13]
    assert [b[0]["payload"]["call_id"] for b in by_run.values()] == [
        "plan.1.11",
        "plan.1.12",
        "plan.1.13",
    ]
    assert all(b[0]["kind"] == "stage.delta" and b[0]["stage"] == "plan" for b in by_run.values())


@pytest.mark.django_db
def test_a_runs_deltas_reach_the_layer_before_its_next_events():
    run = RunFactory(with_stages=False)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    # One channel in both groups, as a web process's hub reads them: in the order sent.
    async_to_sync(layer.group_add)(events.deltas_group(), channel)
    async_to_sync(layer.group_add)(run_group(run.pk), channel)
    row = event_record(run_id=run.pk, kind="stage.progress", stage="plan")
    for i in range(5):
        events.deltas_publish(run_id=run.pk, items=[("plan", _piece("plan.1.1", "x" * i))])
        event_publish(row)
    kinds = [m["kind"] for m in _drained(layer, channel)]
    assert kinds == ["stage.delta", "stage.progress"] * 5


def test_the_outbox_drops_its_oldest_text_when_the_layer_cannot_keep_up(monkeypatch):
    outbox = events._DeltaOutbox()
    monkeypatch.setattr(outbox, "MAX_ITEMS", 3)
    assert outbox.put([{"run_id": 1, "n": i} for i in range(2)]) is True  # starts a drain
    assert outbox.put([{"run_id": 1, "n": i} for i in range(2, 5)]) is False  # one runs
    assert [r["n"] for r in outbox.take(last=True)] == [2, 3, 4]
    assert outbox.dropped == 2
    assert outbox.take(last=True) == []  # the drain ends: the next put starts one
    assert outbox.put([{"run_id": 1, "n": 5}]) is True


@pytest.mark.django_db
def test_a_process_sends_its_deltas_at_a_bounded_pace(monkeypatch):
    # However many runs stream, a worker process sends one delta message per interval.
    import time

    # An earlier test's drain may still be on its way (it keeps the layer it began with):
    # this one's first piece must start a drain of its own.
    for _ in range(500):
        if not events._outbox._draining:
            break
        time.sleep(0.01)
    monkeypatch.setattr(events, "DRAIN_INTERVAL_S", 2.0)
    monkeypatch.setattr(events._outbox, "sent_at", float("-inf"))
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.deltas_group(), channel)

    def next_messages() -> list[list[int]]:
        for _ in range(100):
            got = _drained(layer, channel)
            if got:
                return [list(events.deltas_unpack(m)) for m in got]
            time.sleep(0.05)
        return []

    events.deltas_publish(run_id=21, items=[("plan", _piece("plan.1.1", "First "))])
    assert next_messages() == [[21]]  # the first goes at once
    for run_id in (22, 23, 24):
        events.deltas_publish(run_id=run_id, items=[("plan", _piece("plan.1.1", "then "))])
    time.sleep(0.2)
    assert _drained(layer, channel) == []  # the rest waits its turn
    assert next_messages() == [[22, 23, 24]]
