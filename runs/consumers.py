"""WebSocket `/ws/runs/<id>/`: a run's events as JSON, replayed from `?after=SEQ`, then live.

Authentication: the session (AuthMiddlewareStack), or an API token as `?token=` or as the
subprotocol `bearer.<token>` (a browser WebSocket cannot send an Authorization header).
The socket is accepted first so the client sees why it is closed: 4401 unauthenticated,
4404 no such run or not visible, 4400 a bad `?after=`. Every message is
{"seq", "kind", "stage", "payload", "created_at"}, in seq order with no gap and no
duplicate (the shared hub repairs gaps from the database); the socket closes with 1000
after the run's final event. With `?deltas=1` the agents' streamed text comes too, as
{"kind": "stage.delta", "stage", "payload"} messages without a seq. No database writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from runs.event_hub import db_call, event_json, hub
from runs.selectors import run_is_visible

logger = logging.getLogger("tekton.runs.streams")

SUBPROTOCOL = "tekton.events"  # echoed when offered, so browsers accept the handshake
TOKEN_SUBPROTOCOL_PREFIX = "bearer."

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400


def _user_for_token(raw: str):
    """The active user of an API token, or None. Failures are logged without the token."""
    # Imported here: the accounts app sits beside runs, and a consumer without token
    # traffic should not need it loaded.
    from accounts.services import token_authenticate

    token = token_authenticate(raw=raw)
    if token is None:
        logger.warning("websocket: invalid or revoked API token")
        return None
    return token.user


def _authorize(user, token: str | None, run_id: int) -> int:
    """0 when the session user or the token's user may see the run, else the close code."""
    if user is None or not getattr(user, "is_authenticated", False):
        user = _user_for_token(token) if token else None
    if user is None:
        return CLOSE_UNAUTHENTICATED
    if not run_is_visible(user, run_id):
        return CLOSE_NOT_FOUND
    return 0


class RunEventsConsumer(AsyncJsonWebsocketConsumer):
    # No channel of its own on the channel layer: its events come through the hub, whose
    # feed rides out a Redis restart by polling (as SSE does). Channels would otherwise
    # listen on a per-socket channel nothing sends to, and close with 1011 when Redis went.
    channel_layer_alias = None

    async def connect(self):
        self._task: asyncio.Task | None = None
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        offered = list(self.scope.get("subprotocols") or [])
        token = (query.get("token") or [None])[0]
        for proto in offered:
            if proto.startswith(TOKEN_SUBPROTOCOL_PREFIX):
                token = proto[len(TOKEN_SUBPROTOCOL_PREFIX) :]
        # Never echo the token subprotocol: it would put the secret in a response header.
        await self.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)

        # One call on the stream pool: a burst of 1,000 connects must not queue up behind
        # one thread reconnecting to the database for every call.
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        refused = await db_call(_authorize, self.scope.get("user"), token, run_id)
        if refused:
            return await self.close(code=refused)
        raw_after = (query.get("after") or ["0"])[0].strip() or "0"
        if not raw_after.isdigit():
            await self.send_json(
                {"error": f"after must be a whole number >= 0, got {raw_after[:40]!r}"}
            )
            return await self.close(code=CLOSE_BAD_REQUEST)
        deltas = (query.get("deltas") or ["0"])[0].strip().lower() in ("1", "true")
        self._task = asyncio.create_task(self._forward(run_id, int(raw_after), deltas))

    async def _forward(self, run_id: int, after_seq: int, deltas: bool = False) -> None:
        try:
            async with (
                hub().subscribe(run_id, after_seq, deltas=deltas) as sub,
                contextlib.aclosing(sub.batches()) as batches,
            ):
                # Batches, not `stream()`: one generator step fewer per message, which
                # 1,000 sockets of a run pay on every event.
                async for batch in batches:
                    for event in batch:
                        await self.send(text_data=event_json(event))
            await self.close(code=1000)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("websocket: forwarding run %s events failed", run_id)
            await self.close(code=1011)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        # The socket is one-way; anything a client sends (JSON or not) is ignored.
        return None

    async def disconnect(self, code):
        task = getattr(self, "_task", None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
