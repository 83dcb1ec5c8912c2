"""Run events: the one place that records them and publishes them to the channel layer.

A RunEvent row is the record; the channel-layer message is only a hint (at-most-once),
so subscribers reconcile by `seq` from the database.

Deltas (`stage.delta`, an agent's text while its call streams) are the exception: they are
published only, never stored, and carry their text in the message (no seq). Losing one
costs nothing lasting: the stored `stage.progress` message of the call follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.dispatch import Signal

from runs.models import Run, RunEvent
from swarm.redact import redact

logger = logging.getLogger("tekton.runs.events")

FINAL_KINDS = ("run.finished", "run.failed", "run.cancelled")

# Sent inside the recording transaction with the new rows (`events`, in seq order), so a
# receiver's writes (notification deliveries) commit or roll back with the events, and
# its side effects wait for the commit (transaction.on_commit). A receiver must write in
# its own savepoint and must not raise for its own failures; a raising receiver is logged
# and the events are recorded all the same.
events_recorded = Signal()


def run_group(run_id: int) -> str:
    """The channel-layer group that carries a run's events, named in this installation's
    namespace (the layer's prefix keeps installations apart too; the name keeps them
    apart on a layer whose prefix was set to be shared)."""
    return f"{settings.TEKTON_NAMESPACE}.run.{run_id}"


_deferred = threading.local()


@contextlib.contextmanager
def events_deferred() -> Iterator[None]:
    """Inside, recording queues a thread's events; they are written when the block ends,
    in order, one `events_record` per run (one seq bump, one insert). For a transaction
    that records several events (a stage's success: its artifacts, stage.finished, the
    run's end) and reads none of them back: two statements instead of four per event.
    Nothing is written when the block raises; nested blocks join the outer one."""
    if getattr(_deferred, "items", None) is not None:
        yield
        return
    _deferred.items = {}
    try:
        yield
        pending, _deferred.items = _deferred.items, None
        for run_id, items in pending.items():
            events_record(run_id=run_id, items=items, savepoint=False)
    finally:
        _deferred.items = None


def event_record(
    *,
    run_id: int,
    kind: str,
    stage: str = "",
    payload: dict[str, Any] | None = None,
    savepoint: bool = True,
) -> RunEvent | None:
    """Write the next event of a run and publish it once the transaction commits; inside
    `events_deferred`, queue it (and return None).

    See events_record; raises Run.DoesNotExist when the run is gone.
    """
    rows = events_record(run_id=run_id, items=[(kind, stage, payload)], savepoint=savepoint)
    return rows[0] if rows else None


def events_record(
    *,
    run_id: int,
    items: list[tuple[str, str, dict[str, Any] | None]],
    savepoint: bool = True,
    run_add: dict[str, int | Decimal] | None = None,
) -> list[RunEvent]:
    """Write several events of one run, in order, in one transaction; publish on commit.

    `items` are (kind, stage, payload). The seqs come from one conditional
    `UPDATE ... SET event_seq = event_seq + n` on the run row, which takes the row's write
    lock, so concurrent writers (review and threat side by side) serialise and seq has no
    gap and no duplicate. Payloads are redacted. Raises Run.DoesNotExist when the run is gone.
    `savepoint=False`: the caller's transaction is undone on any error anyway, so no
    savepoint of its own (two round trips less inside it). Returns the rows written
    (none yet inside `events_deferred`). `run_add` ({column: amount}, the run's token
    tallies) is added to the run row in the same UPDATE as the seq, so a batch that
    counts tokens and records events touches the run row once.
    """
    run_add = {c: v for c, v in (run_add or {}).items() if v}
    for column in run_add:
        if column not in RUN_ADDABLE:
            raise ValueError(f"run_add cannot add to {column!r}")
    queued = getattr(_deferred, "items", None)
    if not items or queued is not None:
        if run_add:
            Run.objects.filter(pk=run_id).update(**{c: F(c) + v for c, v in run_add.items()})
        if items:
            queued.setdefault(run_id, []).extend(items)
        return []
    n = len(items)
    with transaction.atomic(savepoint=savepoint):
        last = _seq_bump(run_id, n, run_add)
        if last is None:
            raise Run.DoesNotExist(f"run {run_id} does not exist")
        rows = RunEvent.objects.bulk_create(
            RunEvent(
                run_id=run_id,
                seq=last - n + 1 + i,
                kind=kind,
                stage=stage,
                payload=redact(dict(payload or {})),
            )
            for i, (kind, stage, payload) in enumerate(items)
        )
        for receiver, result in events_recorded.send_robust(sender=RunEvent, events=rows):
            if isinstance(result, Exception):
                logger.warning("events receiver %r failed: %s", receiver, redact(str(result)))
        transaction.on_commit(lambda: events_publish(rows))
    return rows


# What events_record may add to the run row beside its seq: the token tallies.
RUN_ADDABLE = frozenset(
    {"input_tokens", "output_tokens", "cost_usd", "cached_input_tokens", "cache_write_tokens"}
)


def _seq_bump(run_id: int, n: int, add: dict[str, int | Decimal] | None = None) -> int | None:
    """Add `n` to the run's event_seq (and `add`'s amounts to their columns) and return the
    new seq (None: no such run), in one round trip where the database returns updated rows
    (PostgreSQL, SQLite >= 3.35)."""
    add = add or {}
    conn = transaction.get_connection()
    if conn.vendor == "postgresql" or (
        conn.vendor == "sqlite" and conn.Database.sqlite_version_info >= (3, 35)
    ):
        q = conn.ops.quote_name
        table, seq, pk = q(Run._meta.db_table), q("event_seq"), q(Run._meta.pk.column)
        sets, params = [f"{seq} = {seq} + %s"], [n]
        for name, amount in add.items():
            field = Run._meta.get_field(name)
            column = q(field.column)
            sets.append(f"{column} = {column} + %s")
            params.append(field.get_db_prep_value(amount, conn))
        with conn.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {', '.join(sets)} WHERE {pk} = %s RETURNING {seq}",
                [*params, run_id],
            )
            row = cursor.fetchone()
        return None if row is None else int(row[0])
    if not Run.objects.filter(pk=run_id).update(
        event_seq=F("event_seq") + n, **{c: F(c) + v for c, v in add.items()}
    ):
        return None
    return Run.objects.values_list("event_seq", flat=True).get(pk=run_id)


def event_message(event: RunEvent) -> dict[str, Any]:
    """The channel-layer message for an event (also what JSON subscribers receive)."""
    return {
        "type": "run.event",
        "run_id": event.run_id,
        "seq": event.seq,
        "kind": event.kind,
        "stage": event.stage,
        "payload": event.payload,
        "created_at": event.created_at.isoformat() if event.created_at else None,
    }


DELTA_KIND = "stage.delta"
DELTAS_TYPE = "run.deltas"


def deltas_group() -> str:
    """The channel-layer group that carries every run's streamed text. One group, not one
    per run: each web process's hub joins it once (runs.event_hub) while it has a delta
    subscriber, and picks out the runs it serves. Per-run messages made one layer send and
    one receive per run per flush, and at 100 streaming runs the hub's receives (one
    Redis round trip each, one at a time) fell seconds behind and overflowed its channel."""
    return f"{settings.TEKTON_NAMESPACE}.deltas"


def deltas_message(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The channel-layer message of coalesced deltas, of one run or many: `items` are
    {"run_id", "stage", "payload"} in the order they were published; no seq."""
    return {"type": DELTAS_TYPE, "kind": DELTA_KIND, "deltas": items}


def deltas_unpack(message: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """A delta message as the event dicts subscribers get ({"kind", "stage", "payload"}),
    by run id, each run's in order."""
    out: dict[int, list[dict[str, Any]]] = {}
    for item in message.get("deltas") or []:
        if not isinstance(item, dict) or not isinstance(item.get("payload"), dict):
            continue
        run_id = item.get("run_id")
        if not isinstance(run_id, int):
            continue
        out.setdefault(run_id, []).append(
            {"kind": DELTA_KIND, "stage": str(item.get("stage") or ""), "payload": item["payload"]}
        )
    return out


# Whether anyone follows a run's streamed text, shared by every process of the
# installation (runs.sharedmem: Redis in services mode). A hub with a delta subscriber
# marks its runs for WATCH_TTL_S and marks them again every WATCH_REFRESH_S; an engine
# asks at most every WATCH_CHECK_S per run, so a watcher who joins waits that long at
# most for the text (the call's text so far comes first: swarm.deltas).
WATCH_TTL_S = 30.0
WATCH_REFRESH_S = 10.0
WATCH_CHECK_S = 1.0
_WATCH_KEY = "deltas-watch:"
_watched: dict[int, tuple[float, bool]] = {}  # run id -> (asked at, answer), this process
_watched_lock = threading.Lock()


def deltas_watch(run_ids: Iterable[int]) -> None:
    """Mark these runs' streamed text as followed for WATCH_TTL_S (call again to keep
    it so). Blocking (a Redis write per run in services mode): call off the event loop."""
    from runs.sharedmem import shared_memory

    memory = shared_memory()
    for run_id in run_ids:
        memory.set_json(f"{_WATCH_KEY}{run_id}", True, ttl_s=WATCH_TTL_S)
        with _watched_lock:
            _watched.pop(run_id, None)  # this process's engines see it at once


def deltas_watched(run_id: int) -> bool:
    """Whether a subscriber follows `run_id`'s streamed text; this process's answer is at
    most WATCH_CHECK_S old. An engine skips reading and publishing what nobody follows."""
    from runs.sharedmem import shared_memory

    now = time.monotonic()
    seen = _watched.get(run_id)
    if seen is not None and now - seen[0] < WATCH_CHECK_S:
        return seen[1]
    answer = bool(shared_memory().get_json(f"{_WATCH_KEY}{run_id}"))
    with _watched_lock:
        if len(_watched) > 1024:  # a long-lived worker forgets the runs it ran
            for key in [k for k, v in _watched.items() if now - v[0] >= WATCH_CHECK_S]:
                del _watched[key]
        _watched[run_id] = (now, answer)
    return answer


def deltas_publish(*, run_id: int, items: list[tuple[str, dict[str, Any]]]) -> None:
    """Publish a run's streamed text: `items` are (stage, payload) as
    swarm.deltas.DeltaCoalescer makes them (already redacted, with the tail held back).
    Ephemeral: no row, no seq. Does not wait for the layer: the text joins this process's
    outbox, and the publishing loop sends what has gathered there, every run's, as one
    message (`_DeltaOutbox`). Never raises."""
    if not items:
        return
    rows = [{"run_id": run_id, "stage": stage, "payload": payload} for stage, payload in items]
    # The outbox serves any thread, an engine's event loop included (swarm.deltas.DeltaRelay
    # publishes from there); only a sync_to_async thread of the ASGI server's loop sends
    # on that loop, where its in-memory layer lives.
    if _server_loop_caller():
        # A thread of the ASGI server's loop (no engine runs there today): send as it is.
        problem = group_messages_send([(deltas_group(), deltas_message(rows))])
        if problem:
            logger.warning("could not publish run %s deltas: %s", run_id, problem)
        return
    if _outbox.put(rows):
        asyncio.run_coroutine_threadsafe(_deltas_drain(), _publish_loop())


class _DeltaOutbox:
    """Streamed text of this process's runs waiting for the publishing loop. Engine
    threads put, the loop takes: while one send is on its way (or waits out the pace) the
    next one gathers, so a busy process sends one message for many runs instead of one per
    run. Bounded: when the layer cannot keep up, the oldest text goes
    (a call's stored message replaces it anyway)."""

    MAX_ITEMS = 20_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []
        self._draining = False
        self._pid = os.getpid()
        self.dropped = 0
        self.sent_at = float("-inf")  # the publishing loop's time of the last send

    def put(self, rows: list[dict[str, Any]]) -> bool:
        """Queue `rows`; True when the caller must start a drain (none is running)."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child: its parent's drain is not its own
                self._items, self._draining, self._pid = [], False, os.getpid()
            self._items.extend(rows)
            over = len(self._items) - self.MAX_ITEMS
            if over > 0:
                del self._items[:over]
                if not self.dropped:  # once per process: a log line per drop would flood
                    logger.warning("the channel layer is behind: dropping streamed text")
                self.dropped += over
            if self._draining:
                return False
            self._draining = True
            return True

    def take(self, *, last: bool = False) -> list[dict[str, Any]]:
        """Everything queued. With `last` (the drain asking for more), an empty outbox ends
        the drain, in the same lock as a put that would otherwise not start one."""
        with self._lock:
            items, self._items = self._items, []
            if last and not items:
                self._draining = False
            return items


_outbox = _DeltaOutbox()
DRAIN_INTERVAL_S = 0.02  # a process's delta messages: 50 a second at most, however many runs


async def _deltas_send(layer, items: list[dict[str, Any]]) -> None:
    try:
        await layer.group_send(deltas_group(), deltas_message(items))
    except Exception as exc:  # ephemeral text: a down layer costs this message only
        logger.warning("could not publish %d deltas: %s", len(items), redact(str(exc)))


async def _deltas_drain() -> None:
    """On the publishing loop: send the outbox until it is empty, one message every
    DRAIN_INTERVAL_S at most: however many runs stream, a process sends at most 50
    messages a second, and each web process that reads them receives as few (one Redis
    round trip each). Without the pace a quick send let every flush go alone again."""
    layer = get_channel_layer()
    loop = asyncio.get_running_loop()
    while True:
        wait = _outbox.sent_at + DRAIN_INTERVAL_S - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)  # outside the lock: stored events' hints go meanwhile
        async with _send_lock():
            items = _outbox.take(last=True)
            if not items:
                return
            if layer is not None:
                await _deltas_send(layer, items)
            _outbox.sent_at = loop.time()


def event_publish(event: RunEvent) -> None:
    """Send one event to its run's group. Never raises: the database is the record."""
    events_publish([event])


def events_publish(rows: list[RunEvent]) -> None:
    """Send events to their runs' groups, in order, in one trip to the publishing loop
    (see `_send`). Never raises: the database is the record,
    and a down Redis must not fail the stage that wrote the events."""
    if not rows:
        return
    problem = _send(rows)
    if problem:
        first = rows[0]
        logger.warning(
            "could not publish run %s events %s..%s: %s",
            first.run_id,
            first.seq,
            rows[-1].seq,
            problem,
        )


# Sends from threads with no event loop (the engine's recording thread, inline runs,
# Celery's pool threads) go to one long-lived loop per process: async_to_sync there would
# start a thread and a new event loop per call, and the Redis layer would open a new
# connection for each new loop. Made on first use, again after a fork.
_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0
SEND_TIMEOUT_S = 30.0


def _publish_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="tekton-events-publish", daemon=True
            ).start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


_lock_of_loop: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None


def _send_lock() -> asyncio.Lock:
    """The publishing loop's one-send-at-a-time lock (sends keep the order they were made
    in; asyncio locks belong to the loop that made them)."""
    global _lock_of_loop
    loop = asyncio.get_running_loop()
    if _lock_of_loop is None or _lock_of_loop[0] is not loop:
        _lock_of_loop = (loop, asyncio.Lock())
    return _lock_of_loop[1]


def _caller_loop() -> bool:
    """Whether async_to_sync would hand this call to an event loop that is already running
    (a sync view under the ASGI server: its loop serves that server's subscribers)."""
    try:
        asyncio.get_running_loop()
        return True  # async_to_sync refuses; keep its error as it was
    except RuntimeError:
        pass
    return _server_loop_caller()


def _server_loop_caller() -> bool:
    """Whether this is a sync_to_async thread of a running ASGI server's loop."""
    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return False
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    return loop is not None and loop.is_running()


def _send(items: list[Any]) -> str:
    """group_send each run's last item (a RunEvent, or a ready message with its run_id)
    to its run's group in one trip to an event loop. A hint says "new events up to this
    seq" and subscribers read the rows themselves, so a batch's last event is hint enough:
    one send (three Redis round trips, queued behind every other thread's on the
    publishing loop) per batch instead of one per row. Returns "" or what went wrong,
    redacted."""
    last: dict[int, Any] = {}
    for item in items:
        last[item.run_id if isinstance(item, RunEvent) else item["run_id"]] = item
    return group_messages_send(
        [
            (run_group(run_id), event_message(item) if isinstance(item, RunEvent) else item)
            for run_id, item in last.items()
        ]
    )


def group_messages_send(messages: list[tuple[str, dict[str, Any]]]) -> str:
    """Send (group, message) pairs, in order, in one trip to an event loop: the one caller of
    group_send in the project (prompts.events publishes an invocation's events through
    it). Returns "" or what went wrong, redacted; never raises."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return ""

        async def send_all() -> None:
            for group, message in messages:
                await layer.group_send(group, message)

        async def send_all_after_deltas() -> None:
            # Streamed text queued before these messages goes first: a call's words reach
            # subscribers before its stored message's hint.
            async with _send_lock():
                if items := _outbox.take():
                    await _deltas_send(layer, items)
                await send_all()

        if _caller_loop():
            async_to_sync(send_all)()
        else:
            asyncio.run_coroutine_threadsafe(send_all_after_deltas(), _publish_loop()).result(
                SEND_TIMEOUT_S
            )
        return ""
    except Exception as exc:
        return redact(str(exc)) or type(exc).__name__
