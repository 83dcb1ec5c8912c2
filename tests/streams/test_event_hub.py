"""The per-process hub: one channel-layer subscription per run, shared reads, gap repair,
dropped hints caught by the poll, clean-up when the last subscriber leaves."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from runs import event_hub
from runs.events import deltas_group, event_record, run_group
from runs.models import Run, RunEvent


async def take(stream, n: int, timeout: float = 5.0) -> list:
    out = []
    while len(out) < n:
        item = await asyncio.wait_for(anext(stream), timeout)
        if item is not event_hub.HEARTBEAT:
            out.append(item)
    return out


@pytest.mark.django_db(transaction=True)
async def test_subscribers_share_one_group_subscription_removed_with_the_last(user, make_run):
    run = await sync_to_async(make_run)(user, ["run.started"])
    hub = event_hub.RunEventHub()
    layer = get_channel_layer()

    async with hub.subscribe(run.pk) as a, hub.subscribe(run.pk, after_seq=1) as b:
        assert hub.feed_count() == 1
        assert hub.subscriber_count(run.pk) == 2
        assert len(layer.groups.get(run_group(run.pk), {})) == 1
        stream_a, stream_b = a.stream(), b.stream()
        assert [e["seq"] for e in await take(stream_a, 1)] == [1]
        await sync_to_async(event_record)(run_id=run.pk, kind="stage.started", stage="plan")
        got_a, got_b = await take(stream_a, 1), await take(stream_b, 1)
        assert got_a == got_b
        assert got_a[0]["seq"] == 2
        await stream_a.aclose()
        await stream_b.aclose()

    assert hub.feed_count() == 0
    assert not layer.groups.get(run_group(run.pk))


@pytest.mark.django_db(transaction=True)
async def test_events_written_without_any_hint_arrive_through_the_poll(user, make_run):
    run = await sync_to_async(make_run)(user, ["run.started"])
    hub = event_hub.RunEventHub()

    def write_silently():
        RunEvent.objects.create(run_id=run.pk, seq=2, kind="run.finished", payload={})
        Run.objects.filter(pk=run.pk).update(event_seq=2, status=Run.Status.SUCCEEDED)

    async with hub.subscribe(run.pk, after_seq=1) as sub:
        stream = sub.stream()
        await sync_to_async(write_silently)()
        events = [e async for e in stream if e is not event_hub.HEARTBEAT]

    assert [(e["seq"], e["kind"]) for e in events] == [(2, "run.finished")]


@pytest.mark.django_db(transaction=True)
async def test_a_gap_in_a_batch_is_filled_from_the_database(user, make_run, monkeypatch):
    monkeypatch.setattr(event_hub, "POLL_SECONDS", 60)  # only our push may wake it
    run = await sync_to_async(make_run)(user, ["run.started", "stage.started"])
    hub = event_hub.RunEventHub()

    async with hub.subscribe(run.pk) as sub:
        stream = sub.stream(heartbeat_seconds=0.3)
        assert [e["seq"] for e in await take(stream, 2)] == [1, 2]

        def write(seq, kind):
            RunEvent.objects.create(run_id=run.pk, seq=seq, kind=kind, payload={"n": seq})

        for seq in (3, 4):
            await sync_to_async(write)(seq, "stage.progress")
        await sync_to_async(write)(5, "stage.finished")
        # A batch holding only seq 5 (3 and 4 were never handed over), then a duplicate.
        fifth = (await event_hub.db_events_after(run.pk, 4, 1))[0]
        sub.push([fifth])
        sub.push([fifth])
        got = await take(stream, 3)
        assert [e["seq"] for e in got] == [3, 4, 5]
        assert [e["payload"]["n"] for e in got] == [3, 4, 5]
        # The duplicate of 5 is skipped: the next thing is silence.
        assert await asyncio.wait_for(anext(stream), 2) is event_hub.HEARTBEAT
        await stream.aclose()


@pytest.mark.django_db(transaction=True)
async def test_a_heartbeat_comes_after_silence_and_its_timer_ends_with_the_stream(
    user, make_run, monkeypatch
):
    monkeypatch.setattr(event_hub, "POLL_SECONDS", 60)  # only our pushes wake it
    run = await sync_to_async(make_run)(user, ["run.started"])
    hub = event_hub.RunEventHub()
    loop = asyncio.get_running_loop()

    def heartbeat_timers() -> int:
        # The loop's scheduled callbacks that are a live subscription's heartbeat.
        return sum(
            1
            for handle in loop._scheduled
            if not handle.cancelled()
            and isinstance(getattr(handle._callback, "__self__", None), event_hub._Heartbeat)
        )

    async with hub.subscribe(run.pk) as sub:
        stream = sub.stream(heartbeat_seconds=0.3)
        assert [e["seq"] for e in await take(stream, 1)] == [1]
        # Events every 0.1 s for 0.8 s: silence never lasts 0.3 s, so no heartbeat.
        got = []
        for seq in range(2, 10):
            sub.push([{"seq": seq, "kind": "stage.progress", "stage": "", "payload": {}}])
            got.append(await asyncio.wait_for(anext(stream), 1))
            await asyncio.sleep(0.1)
        assert [e["seq"] for e in got] == list(range(2, 10))
        assert heartbeat_timers() == 1  # one timer re-armed, not one per event
        started = loop.time()
        assert await asyncio.wait_for(anext(stream), 2) is event_hub.HEARTBEAT
        # 0.3 s after the last event was handed over (0.1 s of it slept above).
        assert 0.1 <= loop.time() - started <= 1.0
        await stream.aclose()
        assert heartbeat_timers() == 0


@pytest.mark.django_db(transaction=True)
async def test_a_stalled_subscriber_drops_its_queue_and_rereads(user, make_run, monkeypatch):
    monkeypatch.setattr(event_hub, "MAX_PENDING", 3)
    monkeypatch.setattr(event_hub, "POLL_SECONDS", 60)
    run = await sync_to_async(make_run)(
        user, ["run.started", "a", "b", "c", "d", "run.finished"], Run.Status.SUCCEEDED
    )
    hub = event_hub.RunEventHub()
    async with hub.subscribe(run.pk, after_seq=6) as sub:
        sub.last_seq = 1  # as if it had stopped reading after seq 1
        batch = await event_hub.db_events_after(run.pk, 1, 5)
        for event in batch:
            sub.push([event])  # more than MAX_PENDING: the queue is dropped
        assert sub._pending_count <= 3
        assert sub._resync is True
        events = []
        stream = sub.stream()
        async for item in stream:
            if item is not event_hub.HEARTBEAT:
                events.append(item["seq"])
    assert events == [2, 3, 4, 5, 6]


@pytest.mark.django_db(transaction=True)
async def test_subscribers_total_counts_every_stream_of_the_process(user, make_run):
    # What the metrics scrape reports as tekton_event_stream_subscribers.
    one = await sync_to_async(make_run)(user, ["run.started"])
    two = await sync_to_async(make_run)(user, ["run.started"])
    hub = event_hub.hub()
    before = event_hub.subscribers_total()
    async with hub.subscribe(one.pk), hub.subscribe(one.pk), hub.subscribe(two.pk):
        assert event_hub.subscribers_total() - before == 3
    assert event_hub.subscribers_total() == before


@pytest.mark.django_db(transaction=True)
async def test_a_feed_joins_its_group_again_after_the_layer_comes_back(user, make_run, monkeypatch):
    """A Redis restart fails the feed's receive and forgets every group: the feed must join
    again, or stored events reach its subscribers on the poll only and deltas never."""
    from runs.events import deltas_publish

    monkeypatch.setattr(event_hub, "POLL_SECONDS", 0.1)
    run = await sync_to_async(make_run)(user, ["run.started"])
    hub = event_hub.RunEventHub()
    layer = get_channel_layer()
    real_receive = layer.receive
    restarted = asyncio.Event()
    failed: set[str] = set()

    async def receive_across_a_restart(channel):
        # A restart fails every reader's receive once (the feed's and the deltas').
        if channel not in failed:
            failed.add(channel)
            if not restarted.is_set():
                restarted.set()
                layer.groups.clear()  # what a restarted Redis remembers
            raise ConnectionError("Connection reset by peer")
        return await real_receive(channel)

    monkeypatch.setattr(layer, "receive", receive_across_a_restart)
    async with hub.subscribe(run.pk, deltas=True) as sub:
        stream = sub.stream()
        assert [e["seq"] for e in await take(stream, 1)] == [1]
        await asyncio.wait_for(restarted.wait(), 5)
        for _ in range(100):  # both joined again
            if layer.groups.get(run_group(run.pk)) and layer.groups.get(deltas_group()):
                break
            await asyncio.sleep(0.05)
        piece = {"role": "skeptic", "round": 1, "call_id": "plan.1.2", "text": "No ", "offset": 0}
        await sync_to_async(deltas_publish)(run_id=run.pk, items=[("plan", piece)])
        (got,) = await take(stream, 1)
        await stream.aclose()

    assert got == {"kind": "stage.delta", "stage": "plan", "payload": piece}


@pytest.mark.django_db(transaction=True)
async def test_one_group_brings_every_runs_deltas_and_each_feed_gets_its_own(user, make_run):
    from runs.events import deltas_publish

    run_a = await sync_to_async(make_run)(user, ["run.started"])
    run_b = await sync_to_async(make_run)(user, ["run.started"])
    hub = event_hub.RunEventHub()
    layer = get_channel_layer()
    piece = {"role": "skeptic", "round": 1, "call_id": "plan.1.2", "text": "No ", "offset": 0}

    async with (
        hub.subscribe(run_a.pk, deltas=True) as a,
        hub.subscribe(run_b.pk, deltas=True) as b,
        hub.subscribe(run_b.pk) as quiet,
    ):
        assert len(layer.groups.get(deltas_group(), {})) == 1  # one channel for the hub
        streams = [s.stream() for s in (a, b, quiet)]
        for stream in streams:
            assert [e["seq"] for e in await take(stream, 1)] == [1]
        await sync_to_async(deltas_publish)(
            run_id=run_b.pk, items=[("plan", {**piece, "text": "for b"})]
        )
        await sync_to_async(deltas_publish)(run_id=run_a.pk, items=[("plan", piece)])
        (got_a,) = await take(streams[0], 1)
        (got_b,) = await take(streams[1], 1)
        await sync_to_async(event_record)(run_id=run_b.pk, kind="stage.started", stage="plan")
        # The subscriber that did not ask for deltas sees the stored event only.
        assert [e["kind"] for e in await take(streams[2], 1)] == ["stage.started"]
        for stream in streams:
            await stream.aclose()

    assert got_a["payload"] == piece
    assert got_b["payload"]["text"] == "for b"
    assert not layer.groups.get(deltas_group())  # left with the last delta subscriber


@pytest.mark.django_db(transaction=True)
async def test_a_delta_subscriber_marks_its_run_followed_and_keeps_it_marked(
    user, make_run, monkeypatch
):
    from runs import events
    from runs.sharedmem import shared_memory

    marked: list[list[int]] = []
    real = events.deltas_watch
    monkeypatch.setattr(event_hub, "deltas_watch", lambda ids: (marked.append(ids), real(ids)))
    monkeypatch.setattr(event_hub, "WATCH_REFRESH_S", 0.05)
    run = await sync_to_async(make_run)(user, ["run.started"])
    other = await sync_to_async(make_run)(user, ["run.started"])
    for run_id in (run.pk, other.pk):  # marks another test of this process left
        shared_memory().delete(f"deltas-watch:{run_id}")
    events._watched.clear()
    hub = event_hub.RunEventHub()

    async with hub.subscribe(other.pk):  # no deltas asked for: nothing marked
        assert not events.deltas_watched(other.pk)
    async with hub.subscribe(run.pk, deltas=True), hub.subscribe(run.pk, deltas=True):
        assert marked == [[run.pk]]  # once, before the subscriber is live
        assert events.deltas_watched(run.pk)
        await asyncio.sleep(0.2)
        assert marked[-1] == [run.pk] and len(marked) >= 3  # marked again while followed
    count = len(marked)
    await asyncio.sleep(0.2)
    assert len(marked) == count  # left: the mark runs out on its own
    assert not events.deltas_watched(other.pk)


@pytest.mark.django_db(transaction=True)
async def test_a_subscriber_that_fell_behind_gets_what_is_ready_in_one_batch(user, make_run):
    run = await sync_to_async(make_run)(user, ["run.started"])
    hub = event_hub.RunEventHub()

    async with hub.subscribe(run.pk) as sub:
        batches = sub.batches()
        assert [e["seq"] for e in await asyncio.wait_for(anext(batches), 5)] == [1]
        for stage in ("plan", "research", "plan_update"):
            await sync_to_async(event_record)(run_id=run.pk, kind="stage.started", stage=stage)
        for _ in range(100):  # the feed has handed all three over
            if sub._pending_count == 3:
                break
            await asyncio.sleep(0.05)
        got = await asyncio.wait_for(anext(batches), 5)
        await batches.aclose()

    assert [(e["seq"], e["stage"]) for e in got] == [
        (2, "plan"),
        (3, "research"),
        (4, "plan_update"),
    ]
