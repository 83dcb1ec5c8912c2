from __future__ import annotations

import logging
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

from runs import events
from runs.events import event_publish, event_record, run_group
from runs.models import Run, RunEvent
from tests.factories import RunFactory

SECRET = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123"


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
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(run_group(run.pk), channel)
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
def test_publishing_reuses_one_loop_and_keeps_order(monkeypatch):
    # From a thread with no event loop (the recording thread, a Celery pool thread), each
    # send used to start a thread and a loop of its own; now they share one per process.
    run = RunFactory(with_stages=False)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(run_group(run.pk), channel)
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
