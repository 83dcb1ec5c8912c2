"""WebSocket `/ws/runs/<id>/ui/?after=SEQ`: the run page's live channel, as rendered HTML
fragments for htmx out-of-band swaps (the htmx ws extension swaps every top-level element
of a message by its id).

Authentication is the session (AuthMiddlewareStack); the socket is accepted first so the
client sees why it is closed: 4401 not logged in, 4404 no such run or not visible, 4400 a
bad `after`. Events come from the shared hub (runs.event_hub), which replays from the
database after `after`, then follows the channel layer's hints and repairs gaps by seq.
Whatever arrived while the last message was being rendered is coalesced into the next
one, and each message carries the whole header, the whole timeline and the seq it reflects
(#run-seq), so applying any message brings the page up to date; the page reconnects with
the last seq it applied. The socket closes with 1000 after the run's final event.
An update the database cannot render (it is restarting, the pool timed out) is skipped
with a warning in the log and the socket stays open: the next event renders it all.

With `?deltas=1` the agents' streamed text comes too, as JSON text messages
({"kind": "stage.delta", "stage", "payload"}, see runs.events.deltas_publish), sent as
they arrive rather than rendered: the page's script appends the text to the agent's card
(static/tekton/tekton.js) and keeps htmx from swapping them. No database writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.template.loader import render_to_string

from runs.event_hub import HEARTBEAT, event_json, hub
from runs.selectors import run_is_visible
from swarm.redact import redact

logger = logging.getLogger("tekton.runs.streams")

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400


@database_sync_to_async
def _can_view(user, run_id: int) -> bool:
    return run_is_visible(user, run_id)


def fragments_render(run_id: int, csrf_token: str = "") -> str:
    """The header, the timeline and the seq marker of a run as out-of-band fragments.
    Three queries. `csrf_token` goes into the header's cancel / resume forms."""
    # Imported here: the views module pulls in forms and services the socket never needs
    # until it renders.
    from runs.views import run_live_context, run_live_load

    run, stages, counts = run_live_load(run_id)
    context = {**run_live_context(run, stages, counts), "oob": True, "csrf_token": csrf_token}
    return "".join(
        render_to_string(f"runs/detail.html#{name}", context)
        for name in ("run-header", "stage-list", "seq-marker")
    )


def _csrf_from_scope(scope) -> str:
    # The page set the cookie; its value (the unmasked secret) is a valid form token.
    for name, value in scope.get("headers") or []:
        if name == b"cookie":
            cookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin1"))
            except Exception:
                return ""
            morsel = cookie.get(settings.CSRF_COOKIE_NAME)
            return morsel.value if morsel else ""
    return ""


class RunUiConsumer(AsyncWebsocketConsumer):
    # Events come through the hub only: no per-socket channel-layer channel, whose receive
    # would close the socket with 1011 when Redis restarts (see RunEventsConsumer).
    channel_layer_alias = None

    async def connect(self):
        self._tasks: list[asyncio.Task] = []
        await self.accept()
        user = self.scope.get("user")
        if user is None or not getattr(user, "is_authenticated", False):
            return await self.close(code=CLOSE_UNAUTHENTICATED)
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        if not await _can_view(user, run_id):
            return await self.close(code=CLOSE_NOT_FOUND)
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        raw_after = ((query.get("after") or ["0"])[0]).strip() or "0"
        if not raw_after.isdigit():
            return await self.close(code=CLOSE_BAD_REQUEST)
        self._run_id = run_id
        self._csrf = _csrf_from_scope(self.scope)
        self._changed = asyncio.Event()
        self._pending = 0
        self._ended = False
        self._failed = False
        self._stale = False  # the last update was skipped: the page is behind
        self._deltas = (query.get("deltas") or ["0"])[0].strip().lower() in ("1", "true")
        self._tasks = [
            asyncio.create_task(self._follow(run_id, int(raw_after))),
            asyncio.create_task(self._send_loop()),
        ]

    async def _follow(self, run_id: int, after_seq: int) -> None:
        """Counts new events; the stream ends after the run's final event."""
        try:
            async with hub().subscribe(run_id, after_seq, deltas=self._deltas) as sub:
                async for event in sub.stream(heartbeat_seconds=None):
                    if event is HEARTBEAT:
                        continue
                    if event.get("seq") is None:
                        await self.send(text_data=event_json(event))
                        continue
                    self._pending += 1
                    self._changed.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("ui websocket: following run %s failed", run_id)
            self._failed = True
        finally:
            self._ended = True
            self._changed.set()

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                if self._pending:
                    self._pending = 0
                    html = await self._render()
                    self._stale = html is None
                    if html is not None:
                        await self.send(text_data=html)
                if self._ended and not self._pending:
                    break
            # 1011 makes htmx reconnect (and resume by seq); 1000 tells it the run is over,
            # which it is not for a page whose last update could not be rendered.
            await self.close(code=1011 if self._failed or self._stale else 1000)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("ui websocket: rendering run %s failed", self._run_id)
            await self.close(code=1011)

    async def _render(self) -> str | None:
        """The fragments, or None when the database does not answer (a restart, a pool
        timeout): that update is skipped, and the next one renders the whole page again."""
        try:
            return await database_sync_to_async(fragments_render)(self._run_id, self._csrf)
        except (OperationalError, InterfaceError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            logger.warning(
                "ui websocket: run %s update skipped, database unavailable: %s",
                self._run_id,
                redact(reason)[:300],
            )
            return None

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        # One-way: the page never needs to say anything after connecting.
        return None

    async def disconnect(self, code):
        for task in getattr(self, "_tasks", []):
            if not task.done():
                task.cancel()
        for task in getattr(self, "_tasks", []):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
