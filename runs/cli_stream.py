"""`manage.py tekton run --deltas`: the agents' text as it streams, in a terminal.

DeltaListener follows a run's `stage.delta` messages on the channel layer (the stream the
dashboard and the TUI get) from a thread with its own event loop: Redis in services mode,
the in-process layer when this process runs the stages (embedded mode). DeltaPrinter
writes them as running text: the pieces of one call continue its line, and a piece of
another call starts a new line named after its stage, role and round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer

from runs.events import DELTA_KIND, deltas_unpack, run_group
from swarm.redact import redact

logger = logging.getLogger("tekton.runs.cli_stream")

# The in-process layer's queues wake a receiver only when its loop runs: poll them.
_WAKE_SECONDS = 0.05


class DeltaListener:
    """`start()` joins the run's group; `drain()` returns the deltas received since the
    last call (dicts: stage, payload); `stop()` leaves. A layer that fails is logged and
    the listener goes quiet: the stored events still come."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self._inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._settle = threading.Event()
        self._settled = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name=f"tekton-deltas-{run_id}", daemon=True
        )

    def start(self) -> DeltaListener:
        self._thread.start()
        self._ready.wait(timeout=5)
        return self

    def drain(self, *, settle: bool = False) -> list[dict[str, Any]]:
        """The deltas received so far. With `settle`, first whatever the layer already
        holds for this listener (a call's text is published before its stored message
        commits, so after reading events, settling yields the text that preceded them)."""
        if settle and self._thread.is_alive() and self._ready.is_set():
            self._settled.clear()
            self._settle.set()
            self._settled.wait(timeout=1.0)
        out = []
        while True:
            try:
                out.append(self._inbox.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _main(self) -> None:
        try:
            asyncio.run(self._listen())
        except Exception as exc:
            logger.warning("run %s: not following its deltas: %s", self.run_id, redact(str(exc)))
        finally:
            self._ready.set()

    async def _listen(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        channel = await layer.new_channel()
        group = run_group(self.run_id)
        await layer.group_add(group, channel)
        self._ready.set()
        poll = _WAKE_SECONDS if isinstance(layer, InMemoryChannelLayer) else 0.5
        try:
            while not self._stop.is_set():
                if self._settle.is_set():
                    # Take what is waiting now: a short receive ends once nothing is left.
                    self._settle.clear()
                    while await self._receive(layer, channel, _WAKE_SECONDS):
                        pass
                    self._settled.set()
                    continue
                await self._receive(layer, channel, poll)
        finally:
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)

    async def _receive(self, layer: Any, channel: str, timeout: float) -> bool:
        try:
            message = await asyncio.wait_for(layer.receive(channel), timeout)
        except TimeoutError:
            return False
        if message.get("kind") == DELTA_KIND:
            for delta in deltas_unpack(message):
                self._inbox.put(delta)
        return True


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
