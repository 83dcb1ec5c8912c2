"""Per-process fan-out of a run's live events to every local subscriber (SSE and WebSocket).

The channel layer is at-most-once, so a group message is only a hint that something new
was committed. One feed per run per event loop holds the single channel-layer subscription
(`new_channel` + `group_add`) for that run; on a hint, or every `POLL_SECONDS` as a safety
net, it reads the new events from the database once and hands the same list to every local
subscriber. Each subscriber keeps its own last seq, replays from the database itself when it
joins, skips what it already sent and fetches any gap from the database, so what it yields
is every event after its resume point, in seq order, with no gap and no duplicate.
The feed unsubscribes when its last local subscriber leaves.

The same machinery carries any other stored, seq-numbered event stream (a prompt
invocation's, see prompts.events): an `EventSource` names its group and its reads, and
feeds are keyed by (source, id); RUN_EVENTS is the default.

Deltas (`stage.delta`, streamed text) are not hints: the message is the whole thing (there
is no row to read). Every run's come through one group (runs.events.deltas_group), which a
hub joins once while any of its subscribers asked for deltas; it hands each run's to that
run's feed, and the feed to the subscribers that asked, in arrival order between the
stored events. They carry no seq and never move a subscriber's resume point. While a
subscriber here follows a run's deltas the hub marks the run as followed
(runs.events.deltas_watch): engines read and publish only followed runs' text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import DatabaseError, connection

from runs.events import (
    FINAL_KINDS,
    WATCH_REFRESH_S,
    deltas_group,
    deltas_unpack,
    deltas_watch,
    run_group,
)
from runs.models import Run, RunEvent
from runs.selectors import run_events_after, run_last_event, run_last_seq, run_status
from tekton_site.db import connection_release

logger = logging.getLogger("tekton.runs.streams")

POLL_SECONDS = 1.0  # safety net for hints the channel layer dropped
# Waits use `asyncio.timeout`, not `wait_for`: Python 3.11's wait_for can swallow a
# cancellation that lands as its timeout fires, and a feed's loop then outlived stop()
# (the stream never closed, and the loop went on reading after its test or client).
IN_MEMORY_WAKE_SECONDS = 0.05
PAGE = 500  # events per database read
MAX_PENDING = 5000  # a subscriber this far behind drops its queue and re-reads the database

# Stream reads run on a small dedicated pool rather than per request: under ASGI every
# request gets its own thread (and database connection) for thread-sensitive calls, and
# 1,000 open streams must not hold 1,000 PostgreSQL connections.
_DB_THREADS = int(os.environ.get("TEKTON_STREAM_DB_THREADS", "4"))
_db_executor = ThreadPoolExecutor(max_workers=_DB_THREADS, thread_name_prefix="tekton-streams-db")

HEARTBEAT = object()  # yielded by Subscription.stream() when nothing happened for a while


_ENCODED_KEEP = 4096
_encoded: OrderedDict[tuple[int, str], tuple[dict[str, Any], Any]] = OrderedDict()
_encoded_lock = threading.Lock()


def encoded_once(event: dict[str, Any], form: str, encode: Callable[[dict[str, Any]], Any]) -> Any:
    """`encode(event)`, computed once per event and `form` however many subscribers send
    it: a feed hands every subscriber the same dict objects, so 1,000 streams of a run cost
    one encoding per event, not 1,000. Keyed by identity (the dict is kept with its
    encoding, so its id cannot be reused while cached)."""
    key = (id(event), form)
    with _encoded_lock:
        hit = _encoded.get(key)
        if hit is not None and hit[0] is event:
            return hit[1]
    value = encode(event)
    with _encoded_lock:
        _encoded[key] = (event, value)
        if len(_encoded) > _ENCODED_KEEP:
            _encoded.popitem(last=False)
    return value


def _json(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), default=str)


def event_json(event: dict[str, Any]) -> str:
    """An event dict as compact JSON, encoded once per event (`encoded_once`)."""
    return encoded_once(event, "json", _json)


def event_dict(event: RunEvent) -> dict[str, Any]:
    """The shape every stream subscriber receives."""
    return {
        "seq": event.seq,
        "kind": event.kind,
        "stage": event.stage,
        "payload": event.payload,
        "created_at": event.created_at.isoformat() if event.created_at else None,
    }


def _with_reconnect(fn, *args):
    # These pool threads live outside any request, so nothing closes a connection that
    # went bad (database restart): drop it and retry once on a fresh one. Between reads
    # the connection goes back to the database pool (tekton_site.db), where the web
    # process's request threads can use it.
    try:
        try:
            return fn(*args)
        except DatabaseError:
            connection.close()
            return fn(*args)
    finally:
        connection_release()


def _events_after_sync(run_id: int, after_seq: int, limit: int) -> list[dict[str, Any]]:
    return [event_dict(e) for e in run_events_after(run_id, after_seq, limit)]


def _last_seq_sync(run_id: int) -> int:
    return run_last_seq(run_id)


def _run_state_sync(run_id: int) -> tuple[str, int, str] | None:
    """(status, last seq, kind of the last event) or None when the run is gone."""
    status = run_status(run_id)
    if status is None:
        return None
    last = run_last_event(run_id)
    return status, (last or {}).get("seq", 0), (last or {}).get("kind", "")


@dataclass(frozen=True)
class EventSource:
    """A kind of stored event stream the hub can carry: the group its hints go to and the
    (synchronous) reads that reconcile them. `state` answers (status, last seq, kind of
    the last event) or None when the object is gone; the stream ends after an event of
    `final_kinds` once the status is one of `finished`."""

    name: str
    group: Callable[[int], str]
    events_after: Callable[[int, int, int], list[dict[str, Any]]]
    last_seq: Callable[[int], int]
    state: Callable[[int], tuple[str, int, str] | None]
    final_kinds: tuple[str, ...]
    finished: tuple[str, ...]


RUN_EVENTS = EventSource(
    name="run",
    group=run_group,
    events_after=lambda run_id, after, limit: _events_after_sync(run_id, after, limit),
    last_seq=lambda run_id: _last_seq_sync(run_id),
    state=lambda run_id: _run_state_sync(run_id),
    final_kinds=FINAL_KINDS,
    finished=tuple(Run.FINISHED),
)


async def db_call(fn, *args):
    """Run a short read-mostly database function on the stream pool (persistent connections,
    no per-call reconnect), e.g. a WebSocket's authentication at connect time."""
    return await sync_to_async(_with_reconnect, thread_sensitive=False, executor=_db_executor)(
        fn, *args
    )


async def db_events_after(
    run_id: int, after_seq: int, limit: int = PAGE, *, source: EventSource = RUN_EVENTS
) -> list[dict[str, Any]]:
    """A run's (a source's object's) events after `after_seq` (at most `limit`), as dicts,
    read on the stream pool."""
    return await db_call(source.events_after, run_id, after_seq, limit)


async def db_last_seq(run_id: int, *, source: EventSource = RUN_EVENTS) -> int:
    return await db_call(source.last_seq, run_id)


async def db_run_state(
    run_id: int, *, source: EventSource = RUN_EVENTS
) -> tuple[str, int, str] | None:
    return await db_call(source.state, run_id)


class _Heartbeat:
    """Wakes a subscriber after `seconds` without anything sent (None: never), through one
    timer that re-arms itself from the last activity. A timeout around every wait would
    make and cancel a timer per event per subscriber: with 1,000 streams that heap of
    timers was a third of the hub's cost per message."""

    def __init__(self, wake: asyncio.Event, seconds: float | None):
        self._wake = wake
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._active_at = self._loop.time()
        self._due = False
        self._timer = self._loop.call_at(self._active_at + seconds, self._fire) if seconds else None

    def _fire(self) -> None:
        deadline = self._active_at + self._seconds
        if self._loop.time() >= deadline:
            self._due = True
            self._wake.set()
            deadline = self._loop.time() + self._seconds
        self._timer = self._loop.call_at(deadline, self._fire)

    def due(self) -> bool:
        return self._due

    def active(self) -> None:
        """Something was sent (or a heartbeat): silence counts from now."""
        self._active_at = self._loop.time()
        self._due = False

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Subscription:
    """One local subscriber's view of a run: its resume point and the batches the feed
    handed it. Use through `RunEventHub.subscribe()`."""

    def __init__(
        self,
        run_id: int,
        after_seq: int,
        *,
        deltas: bool = False,
        source: EventSource = RUN_EVENTS,
    ):
        self.run_id = run_id
        self.source = source
        self.last_seq = after_seq
        self.deltas = deltas
        self._pending: deque[list[dict[str, Any]]] = deque()
        self._pending_count = 0
        self._resync = False
        self._wake = asyncio.Event()

    def push(self, batch: list[dict[str, Any]]) -> None:
        """Called by the feed with a batch shared by all subscribers (never mutated)."""
        if self._pending_count + len(batch) > MAX_PENDING:
            # A stalled client: stop buffering, it re-reads from its own last seq.
            self._pending.clear()
            self._pending_count = 0
            self._resync = True
        else:
            self._pending.append(batch)
            self._pending_count += len(batch)
        self._wake.set()

    async def _catch_up(self) -> AsyncIterator[list[dict[str, Any]]]:
        """Everything in the database after last_seq, page by page."""
        while True:
            page = await db_events_after(self.run_id, self.last_seq, PAGE, source=self.source)
            if page:
                self.last_seq = page[-1]["seq"]
                yield page
            if len(page) < PAGE:
                return

    async def stream(self, heartbeat_seconds: float | None = None) -> AsyncIterator[Any]:
        """Replayed then live events (dicts) in seq order; `HEARTBEAT` after
        `heartbeat_seconds` of silence. Ends after a final event (run.finished, run.failed,
        run.cancelled; the source's final kinds) when nothing follows it."""
        async with contextlib.aclosing(self.batches(heartbeat_seconds)) as batches:
            async for batch in batches:
                if batch is HEARTBEAT:
                    yield HEARTBEAT
                    continue
                for event in batch:
                    yield event

    async def batches(self, heartbeat_seconds: float | None = None) -> AsyncIterator[Any]:
        """What `stream` yields, as lists: everything that is ready when the subscriber
        asks, so a stream that fell behind catches up in few writes instead of one per
        event (an SSE response writes a list as one chunk)."""
        final_kinds = self.source.final_kinds
        last_kind = ""
        async for page in self._catch_up():
            last_kind = page[-1]["kind"]
            yield page
        if last_kind in final_kinds:
            return
        if not last_kind:
            # Nothing after the resume point: a finished run has nothing more to say.
            state = await db_run_state(self.run_id, source=self.source)
            if state is None:
                return
            status, seq, kind = state
            if status in self.source.finished and kind in final_kinds and self.last_seq >= seq:
                return
        beat = _Heartbeat(self._wake, heartbeat_seconds)
        try:
            while True:
                if not self._pending and not self._resync:
                    await self._wake.wait()
                    if beat.due() and not self._pending and not self._resync:
                        self._wake.clear()
                        yield HEARTBEAT
                        beat.active()
                        continue
                self._wake.clear()
                if self._resync:
                    self._resync = False
                    async for page in self._catch_up():
                        last_kind = page[-1]["kind"]
                        yield page
                        beat.active()
                out: list[dict[str, Any]] = []
                while self._pending:
                    batch = self._pending.popleft()
                    self._pending_count -= len(batch)
                    for event in batch:
                        seq = event.get("seq")
                        if seq is None:
                            out.append(event)  # a delta: live only, no place in the seq order
                            continue
                        if seq <= self.last_seq:
                            continue  # already replayed or sent
                        if seq > self.last_seq + 1:
                            # A gap (dropped hint, or joined mid-way): the database has them.
                            missing = await db_events_after(
                                self.run_id,
                                self.last_seq,
                                seq - self.last_seq - 1,
                                source=self.source,
                            )
                            for old in missing:
                                if old["seq"] < seq:
                                    self.last_seq = old["seq"]
                                    last_kind = old["kind"]
                                    out.append(old)
                        self.last_seq = seq
                        last_kind = event["kind"]
                        out.append(event)
                if out:
                    yield out
                    beat.active()
                if last_kind in final_kinds and not self._pending and not self._resync:
                    return
        finally:
            beat.stop()


class _GroupReader:
    """One channel of this event loop in a channel-layer group, and the task that reads
    it (`on_message` for each message). A failed receive (a Redis restart, which also
    forgets every group) makes it join the group again; `on_rejoin` runs once it has."""

    def __init__(
        self,
        group: str,
        on_message: Callable[[dict[str, Any]], None],
        label: str,
        on_rejoin: Callable[[], None] | None = None,
    ):
        self.group = group
        self.on_message = on_message
        self.label = label
        self.on_rejoin = on_rejoin
        self._layer = None
        self._channel: str | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._layer = get_channel_layer()
        if self._layer is not None:
            joined = await self._join()
            self._task = asyncio.create_task(self._receive(joined))

    async def _join(self, *, quiet: bool = False) -> bool:
        """Join the group (a channel of its own first). False when the layer is down: the
        feeds poll the database meanwhile, and `_receive` tries again."""
        try:
            if self._channel is None:
                self._channel = await self._layer.new_channel()
            await self._layer.group_add(self.group, self._channel)
            return True
        except Exception as exc:  # a down Redis degrades to polling, not to an error
            log = logger.debug if quiet else logger.warning
            log("%s: channel layer unavailable, polling: %s", self.label, exc)
            return False

    async def _receive(self, joined: bool) -> None:
        # The in-process layer (embedded mode) is fed from the engine's threads, and its
        # asyncio queue wakes this loop only when the loop next runs: wake it every
        # IN_MEMORY_WAKE_SECONDS so streamed text is not held back until the next poll.
        wake = IN_MEMORY_WAKE_SECONDS if isinstance(self._layer, InMemoryChannelLayer) else None
        while True:
            if not joined:
                # A restarted Redis has forgotten the group: without joining again, events
                # would reach subscribers on the poll only, and deltas not at all.
                await asyncio.sleep(POLL_SECONDS)
                joined = await self._join(quiet=True)
                if not joined:
                    continue
                logger.info("%s: channel layer back, joined its group again", self.label)
                if self.on_rejoin is not None:
                    self.on_rejoin()
            try:
                async with asyncio.timeout(wake):
                    message = await self._layer.receive(self._channel)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("%s: channel layer receive failed: %s", self.label, exc)
                joined = False
                continue
            self.on_message(message)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._layer is not None and self._channel is not None:
            with contextlib.suppress(Exception):
                await self._layer.group_discard(self.group, self._channel)


class _Feed:
    """The one channel-layer subscription of a run in this process and its reader."""

    def __init__(
        self, run_id: int, source: EventSource = RUN_EVENTS, poll_seconds: float | None = None
    ):
        self.run_id = run_id
        self.source = source
        self.poll_seconds = poll_seconds
        self.subscribers: set[Subscription] = set()
        self.last_seq = 0
        self.ready = asyncio.Event()
        self._hint = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        # What was published while the layer was away is read at once when it is back.
        self._reader = _GroupReader(
            source.group(run_id), self._hinted, f"run {run_id}", on_rejoin=self._hint.set
        )

    async def start(self) -> None:
        try:
            # Read before subscribing to the group: an event committed in between is still
            # above last_seq, so the first read picks it up.
            self.last_seq = await db_last_seq(self.run_id, source=self.source)
            await self._reader.start()
            self._tasks.append(asyncio.create_task(self._pull_loop()))
        finally:
            self.ready.set()

    def _hinted(self, message: dict[str, Any]) -> None:
        seq = message.get("seq")
        if isinstance(seq, int) and seq <= self.last_seq:
            return  # already read from the database
        self._hint.set()

    def deltas_push(self, batch: list[dict[str, Any]]) -> None:
        for sub in list(self.subscribers):
            if sub.deltas:
                sub.push(batch)

    async def _pull_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds or POLL_SECONDS):
                    await self._hint.wait()
            self._hint.clear()
            try:
                await self._pull()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("run %s: reading events failed: %s", self.run_id, exc)

    async def _pull(self) -> None:
        while True:
            batch = await db_events_after(self.run_id, self.last_seq, PAGE, source=self.source)
            if not batch:
                return
            self.last_seq = batch[-1]["seq"]
            for sub in list(self.subscribers):
                sub.push(batch)
            if len(batch) < PAGE:
                return

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._reader.stop()


class RunEventHub:
    """The feeds of one event loop, keyed by (source name, id)."""

    def __init__(self):
        self._feeds: dict[tuple[str, int], _Feed] = {}
        # Every run's streamed text comes through one group (runs.events.deltas_group),
        # joined while a subscriber here asked for deltas.
        self._deltas: _GroupReader | None = None
        self._delta_subscribers = 0
        # Runs whose streamed text a subscriber here follows, and how many follow each:
        # marked as watched (runs.events.deltas_watch) so engines publish it at all.
        self._watching: dict[int, int] = {}
        self._watch_task: asyncio.Task | None = None

    def _deltas_arrived(self, message: dict[str, Any]) -> None:
        for run_id, batch in deltas_unpack(message).items():
            feed = self._feeds.get((RUN_EVENTS.name, run_id))
            if feed is not None:
                feed.deltas_push(batch)

    async def _deltas_join(self, run_id: int) -> None:
        self._delta_subscribers += 1
        if self._delta_subscribers == 1:
            self._deltas = _GroupReader(deltas_group(), self._deltas_arrived, "streamed text")
            await self._deltas.start()
        self._watching[run_id] = self._watching.get(run_id, 0) + 1
        if self._watching[run_id] == 1:
            # Before the subscriber is live, so an engine's next question finds it.
            await _watch([run_id])
        if self._watch_task is None:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch_keep())

    async def _deltas_leave(self, run_id: int) -> None:
        self._delta_subscribers -= 1
        left = self._watching.get(run_id, 1) - 1
        if left > 0:
            self._watching[run_id] = left
        else:
            self._watching.pop(run_id, None)  # unmarked when its mark runs out
        if self._delta_subscribers == 0:
            if self._watch_task is not None:
                self._watch_task.cancel()
                self._watch_task = None
            if self._deltas is not None:
                reader, self._deltas = self._deltas, None
                await reader.stop()

    async def _watch_keep(self) -> None:
        """Mark the followed runs again before their marks run out."""
        while True:
            await asyncio.sleep(WATCH_REFRESH_S)
            if self._watching:
                await _watch(list(self._watching))

    def feed_count(self) -> int:
        return len(self._feeds)

    def subscribers_total(self) -> int:
        """Subscribers whose feed is live (subscribed to the layer; a feed starting reads
        the database first): what a client that waits for its stream to be live counts."""
        return sum(len(f.subscribers) for f in list(self._feeds.values()) if f.ready.is_set())

    def subscriber_count(self, run_id: int, *, source: EventSource = RUN_EVENTS) -> int:
        feed = self._feeds.get((source.name, run_id))
        return len(feed.subscribers) if feed else 0

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        run_id: int,
        after_seq: int = 0,
        *,
        deltas: bool = False,
        source: EventSource = RUN_EVENTS,
        poll_seconds: float | None = None,
    ) -> AsyncIterator[Subscription]:
        """A subscription to `run_id` (an object of `source`) from `after_seq` (with
        `deltas`, streamed text too); joins (or starts) its feed before the subscriber
        replays, so nothing committed meanwhile is missed. `poll_seconds` sets the database
        read between hints of a feed this call starts (a follower no hint can reach polls
        faster)."""
        sub = Subscription(run_id, after_seq, deltas=deltas, source=source)
        key = (source.name, run_id)
        feed = self._feeds.get(key)
        starting = feed is None
        if feed is None:
            feed = self._feeds[key] = _Feed(run_id, source, poll_seconds)
        feed.subscribers.add(sub)
        joined = False
        try:
            if deltas and source.name == RUN_EVENTS.name:  # only runs stream text
                joined = True
                await self._deltas_join(run_id)
            if starting:
                await feed.start()
            else:
                await feed.ready.wait()
            yield sub
        finally:
            feed.subscribers.discard(sub)
            if not feed.subscribers and self._feeds.get(key) is feed:
                del self._feeds[key]
                await feed.stop()
            if joined:
                await self._deltas_leave(run_id)


async def _watch(run_ids: list[int]) -> None:
    try:
        await asyncio.to_thread(deltas_watch, run_ids)  # a Redis write each in services mode
    except Exception as exc:  # shared memory never raises; this is only a last guard
        logger.warning("could not mark runs %s as followed: %s", run_ids, exc)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RunEventHub] = (
    weakref.WeakKeyDictionary()
)


def hub() -> RunEventHub:
    """This event loop's hub (asyncio objects cannot cross loops)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = RunEventHub()
    return found


def subscribers_total() -> int:
    """Event-stream subscribers (SSE and WebSocket) of every loop in this process; read
    from another thread by the metrics scrape."""
    return sum(h.subscribers_total() for h in list(_hubs.values()))
