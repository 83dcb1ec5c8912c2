"""Coalescing and redacting a stage's streamed text before it is published.

The engine emits an AgentDelta per piece a provider streams (a word, often less). Sent
one by one, 100 concurrent runs would flood the channel layer, so the pieces of each call
are joined and let out every `interval` seconds at most (DeltaCoalescer.flush).

What is published is the readable part of each call's answer (swarm.readable): the text
its stored card will show, decoded from the JSON while it streams (a plain answer as it
is). One extractor on the server, so the run page, the TUI (a remote server's too) and
the CLI show the same words and none of them parses partial JSON. A call whose readable
text has not begun yet (a mediator writing its artifact before its rationale) first
sends an empty piece, so its card opens with its typing indicator.

Redaction: a key can arrive split across two pieces, so each call's whole text so far is
redacted (searching only what follows the last flush's clean part, swarm.redact.grown_clean)
and its open tail is held back until more text comes or the call ends: the
part, within the last `hold` characters, that a secret pattern matches up to the end or
could match with more text (swarm.redact.open_tail_start). A secret shorter than `hold`
characters is never published half-way, before the pattern that catches it has seen all
of it, and plain words go out at once (a fixed hold of `hold` characters delayed every
piece by one or two of the provider's pieces). Should redaction
rewrite text already published (a pattern that matches only once more text came), the
next payload starts at the first changed character (`offset`), which subscribers
overwrite from.

Watched or not: streamed text nobody follows is not worth its redaction, JSON decoding
and publishing (a batch of 100 unwatched runs spent a fifth of its worker's CPU there).
A relay with `wanted` asks it per piece (the answer is cached by its owner): while it says
no, a call's pieces only gather as they came, and once it says yes they are read, redacted
and published from the call's first character, so a subscriber who joins mid-call still
sees the whole of it. A call already published goes on being published to its end.

Payloads (what a `stage.delta` carries): {"role", "round", "call_id", "model", "text",
"offset"} with `offset` the position of `text` in the call's published text, or
{"role", "round", "call_id", "discard": True} when a call's text is void.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from swarm.events import AgentDelta
from swarm.readable import ReadableText
from swarm.redact import grown_clean, open_tail_start, redact

INTERVAL_SECONDS = 0.05
HOLD_CHARS = 48  # longer than the shortest text each secret pattern needs to match
# (the window the open tail is looked for in)


@dataclass
class _Call:
    stage: str
    role: str
    round: int
    model: str
    reader: ReadableText = field(default_factory=ReadableText)
    sent: str = ""  # the redacted text published so far
    opened: bool = False  # an empty piece went out: subscribers show the call's card
    ended: bool = False
    dirty: bool = False
    # The readable text at the last flush and, while no pattern has matched it, where a
    # match could still begin (swarm.redact.grown_clean): only what follows is searched.
    raw: str = ""
    open_from: int | None = 0
    backlog: list[str] = field(default_factory=list)  # pieces that came while unwatched

    def redacted(self) -> str:
        """redact() of the readable text so far, scanning only what could have changed."""
        text = self.reader.text
        grew = self.open_from is not None and text.startswith(self.raw)
        # The text can also change before its end (the answer's "position" field arriving
        # after its "rationale"): then it is all searched again. An ended call's text is
        # final: whether a secret could still begin at its end is not asked.
        self.open_from = grown_clean(text, self.open_from if grew else 0, self.ended)
        self.raw = text
        return text if self.open_from is not None else redact(text)


class DeltaCoalescer:
    """Collects a stage's AgentDeltas (`add`) and hands out what to publish (`flush`):
    (stage, payload) pairs, at most one per call per flush, in the order calls began."""

    def __init__(
        self,
        *,
        interval: float = INTERVAL_SECONDS,
        hold: int = HOLD_CHARS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.interval = interval
        self.hold = hold
        self.clock = clock
        self._calls: dict[str, _Call] = {}
        self._discards: list[tuple[str, dict[str, Any]]] = []
        self._last_flush = clock()

    def add(self, delta: AgentDelta, *, quiet: bool = False) -> None:
        """Take a piece. `quiet`: nobody watches now, so a call that has published
        nothing keeps its pieces as they came (no reading, no redaction) until a piece
        comes that is not quiet; an unwatched call that ends is forgotten (its stored
        message follows)."""
        call = self._calls.get(delta.call_id)
        if quiet and (call is None or not (call.sent or call.opened or call.dirty)):
            self._add_quiet(delta, call)
            return
        if delta.discard:
            if call is not None:
                del self._calls[delta.call_id]
                if call.sent or call.opened:
                    self._discards.append(
                        (
                            call.stage,
                            {
                                "role": call.role,
                                "round": call.round,
                                "call_id": delta.call_id,
                                "discard": True,
                            },
                        )
                    )
            return
        if call is None:
            if delta.done:
                return
            call = self._calls[delta.call_id] = _Call(
                delta.stage, delta.role, delta.round, delta.model
            )
        if call.backlog:  # watched from now: what came before is read first
            call.reader.feed("".join(call.backlog))
            call.backlog = []
            call.dirty = True
        if delta.text:
            call.reader.feed(delta.text)
            call.dirty = True
        if delta.done:
            call.ended = call.dirty = True

    def _add_quiet(self, delta: AgentDelta, call: _Call | None) -> None:
        if delta.discard or delta.done:
            self._calls.pop(delta.call_id, None)
            return
        if call is None:
            call = self._calls[delta.call_id] = _Call(
                delta.stage, delta.role, delta.round, delta.model
            )
        if delta.text:
            call.backlog.append(delta.text)

    @property
    def pending(self) -> bool:
        return bool(self._discards) or any(c.dirty for c in self._calls.values())

    def due_in(self) -> float | None:
        """Seconds until the next flush is due (0: now), or None when nothing waits."""
        if not self.pending:
            return None
        return max(0.0, self.interval - (self.clock() - self._last_flush))

    def flush(self, *, now: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """What to publish: nothing before `interval` has passed since the last flush,
        unless `now` (recorded events follow, and the text must go first). A held-back
        tail goes out only once its call is done."""
        if not self.pending or (not now and self.due_in()):
            return []
        self._last_flush = self.clock()
        out, self._discards = self._discards, []
        for call_id, call in list(self._calls.items()):
            if not call.dirty:
                continue
            call.dirty = False
            text = call.redacted()
            if call.ended:
                upto = len(text)
            elif call.open_from is not None and call.open_from >= len(text) - self.hold:
                # Clean so far, and where a match could still begin is known: the open
                # tail starts there (the end, for plain words), no second search.
                upto = call.open_from
            else:
                upto = open_tail_start(text, self.hold)
            if call.ended:
                del self._calls[call_id]
            if upto <= 0:
                if not (call.ended or call.sent or call.opened):
                    call.opened = True
                    out.append((call.stage, self._payload(call_id, call, "", 0)))
                continue
            start = _common_prefix(call.sent, text[:upto])
            if start == upto:
                continue
            call.sent = text[:upto]
            out.append((call.stage, self._payload(call_id, call, text[start:upto], start)))
        return out

    @staticmethod
    def _payload(call_id: str, call: _Call, text: str, offset: int) -> dict[str, Any]:
        return {
            "role": call.role,
            "round": call.round,
            "call_id": call_id,
            "model": call.model,
            "text": text,
            "offset": offset,
        }


class DeltaRelay:
    """The engine's `emit`, in front of the one that stores events: streamed pieces are
    coalesced and published here, on the engine's own event loop (a timer flushes when
    the interval is up), and only the events to store go on to `put`. Handed to the
    stage's recording thread instead, every piece cost a thread wake-up, and under load
    that thread, busy with the database, flushed seconds late (bench.token_stream at 100
    runs: p95 4.1 s, against 0.4-0.6 s from here). Before
    an event goes on, the text waiting here is published, so a call's words precede its
    stored message. Nothing is published once `stopped()` (the lease is lost, the run
    was stopped). `close()` publishes what is left; call it when the engine is done."""

    def __init__(
        self,
        put: Callable[[Any], None],
        publish: Callable[[list[tuple[str, dict[str, Any]]]], None] | None,
        stopped: Callable[[], bool],
        coalescer: DeltaCoalescer | None = None,
        wanted: Callable[[], bool] | None = None,
    ) -> None:
        self._put = put
        self._publish = publish
        self._stopped = stopped
        self._wanted = wanted  # None: always (someone publishes, someone reads)
        self.coalescer = coalescer or DeltaCoalescer()
        self._lock = threading.Lock()  # emit runs on the loop, close after it
        self._timer: asyncio.Handle | None = None

    def emit(self, event: Any) -> None:
        if isinstance(event, AgentDelta):
            if self._publish is None:
                return  # nowhere to go: not worth reading
            quiet = self._wanted is not None and not self._wanted()
            with self._lock:
                self.coalescer.add(event, quiet=quiet)
            self._schedule()
        else:
            self.flush(now=True)
            self._put(event)

    def flush(self, *, now: bool) -> None:
        with self._lock:
            out = self.coalescer.flush(now=now)
        if out and self._publish is not None and not self._stopped():
            self._publish(out)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush(now=True)

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        due = self.coalescer.due_in()
        if due is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop (no engine emits so today): no timer to wait on
            self.flush(now=True)
            return
        # Due now: at the loop's next turn, so the pieces of calls that stream in step
        # (a round's three, woken by one turn of the loop) go out together.
        self._timer = loop.call_soon(self._due) if due <= 0 else loop.call_later(due, self._due)

    def _due(self) -> None:
        self._timer = None
        self.flush(now=False)
        self._schedule()


def _common_prefix(a: str, b: str) -> int:
    if b.startswith(a):
        return len(a)  # the usual case: the text only grew
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
