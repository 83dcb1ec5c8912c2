"""`manage.py tekton run` and `follow`: a run's live events in a terminal.

EventFollower follows a run through the event hub (runs/event_hub.py), the stream the
dashboard's SSE and WebSocket and the TUI get, from a thread with its own event loop:
the stored events from the database in seq order with no gap (the channel layer's
messages only say when to read), and with `deltas` the agents' streamed text, which
the messages carry. In services mode the layer is Redis, so a second process gets it
all; in embedded mode it is this process's own layer, which carries what the stages
running here publish and nothing from another process: a follower there reads new
events by seq every POLL_SECONDS and gets no deltas.

DeltaPrinter writes the deltas as running text: the pieces of one call continue its
line, and a piece of another call starts a new line named after its stage, role and
round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from swarm.redact import redact

logger = logging.getLogger("tekton.runs.cli_stream")

POLL_SECONDS = 0.2  # the database read of a follower no hint reaches (the hub's own is 1 s)
END = object()  # put after the run's final event: the stream has nothing more


class EventFollower:
    """`start()` subscribes (before it returns, so nothing committed or streamed after it
    is missed); `get(timeout)` returns the next items (events as objects with seq, kind,
    stage, payload; deltas as dicts with stage and payload; END once the stream ended);
    `stop()` leaves. `poll_seconds` for a follower the layer's hints cannot reach (its
    reads are timed then, not ordered after the deltas a hint follows). A failing stream is logged and ends the items with END: the caller's
    own status checks say where the run got to."""

    def __init__(
        self,
        run_id: int,
        after_seq: int = 0,
        *,
        deltas: bool = False,
        poll_seconds: float | None = None,
    ):
        self.run_id = run_id
        self.poll_seconds = poll_seconds
        self.after_seq = after_seq
        self.deltas = deltas
        self.error: str = ""
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(
            target=self._main, name=f"tekton-follow-{run_id}", daemon=True
        )

    def start(self) -> EventFollower:
        self._thread.start()
        self._ready.wait(timeout=10)
        return self

    def get(self, timeout: float) -> list[Any]:
        """What arrived: waits up to `timeout` for the first item, then takes the rest."""
        try:
            out = [self._inbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                out.append(self._inbox.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        self._stopping.set()  # a thread that has not begun yet ends as soon as it does
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(task.cancel)
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            logger.warning("run %s: the event stream did not stop", self.run_id)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:
            self.error = redact(str(exc)) or type(exc).__name__
            logger.warning("run %s: the event stream failed: %s", self.run_id, self.error)
        finally:
            self._ready.set()
            self._inbox.put(END)

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        if self._stopping.is_set():
            return
        with contextlib.suppress(asyncio.CancelledError):
            await self._follow()

    async def _follow(self) -> None:
        from runs.event_hub import HEARTBEAT, hub

        async with hub().subscribe(
            self.run_id, self.after_seq, deltas=self.deltas, poll_seconds=self.poll_seconds
        ) as sub:
            self._ready.set()
            async for item in sub.stream(heartbeat_seconds=5):
                if item is HEARTBEAT:
                    if self._stopping.is_set():
                        return  # a cancel that missed the task
                    continue
                if item.get("seq") is None:
                    self._inbox.put(item)  # a delta: stage and payload
                else:
                    self._inbox.put(SimpleNamespace(**item))


def round_label(role: str, number: int) -> str:
    if role == "mediator":
        return "mediator"
    return "opening" if number == 0 else f"debate {number}"


class DeltaPrinter:
    """Writes deltas through `write` as running text, one line per stretch of a call."""

    def __init__(self, write: Callable[[str], None]):
        self.write = write
        self.current = ""  # the call whose text the open line carries
        self.texts: dict[str, str] = {}

    def delta(self, stage: str, payload: dict[str, Any]) -> None:
        if not isinstance(payload, dict):
            return
        call = str(payload.get("call_id") or "")
        if payload.get("discard"):
            if call in self.texts:
                del self.texts[call]
                self.line_end()
                self.write(f"{self._name(stage, payload)}: (discarded; the call is retried)\n")
            return
        text = str(payload.get("text") or "")
        if not text:
            return  # a call's card opening before its readable text: no line for it yet
        offset = payload.get("offset")
        known = self.texts.get(call, "")
        if isinstance(offset, int) and offset < len(known):
            # A resent piece: what was printed cannot be taken back, so print the fix.
            self.line_end()
            text = f"(corrected) {known[:offset] + text}"
            self.texts[call] = known[:offset] + str(payload.get("text") or "")
        else:
            self.texts[call] = known + text
        if call != self.current:
            self.line_end()
            self.write(f"{self._name(stage, payload)}: ")
            self.current = call
        self.write(text.replace("\n", " "))

    def line_end(self) -> None:
        """End the open line of streamed text, so what is printed next starts afresh."""
        if self.current:
            self.write("\n")
            self.current = ""

    @staticmethod
    def _name(stage: str, payload: dict[str, Any]) -> str:
        role = str(payload.get("role") or "?")
        number = payload.get("round") if isinstance(payload.get("round"), int) else 0
        return f"{stage} · {role} · {round_label(role, number)}"
