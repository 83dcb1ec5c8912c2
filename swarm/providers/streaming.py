"""What the backends share for streaming: a sink that feeds a request's on_delta callback
and remembers the text, and the split of a finished text into a few pieces."""

from __future__ import annotations

import re

from swarm.providers.base import DeltaCallback, StreamDelta


class StreamCallbackError(Exception):
    """The caller's on_delta raised. Backends catch this around the SDK call and re-raise
    `original`, so a caller's bug is never mistaken for (or retried as) a provider error."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"on_delta raised {type(original).__name__}: {original}")
        self.original = original


class DeltaSink:
    """Feeds text pieces to `callback` (None: remembers them only) and keeps their join.

    `restart()` voids what was sent so far (it tells the callback once, with a
    StreamDelta whose restart flag is set) and starts the join afresh."""

    def __init__(self, callback: DeltaCallback | None) -> None:
        self.callback = callback
        self._parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def __call__(self, text: str | None) -> None:
        if not text:
            return
        self._parts.append(text)
        self._send(StreamDelta(text))

    def restart(self) -> None:
        if not self._parts:
            return
        self._parts.clear()
        self._send(StreamDelta("", restart=True))

    def _send(self, delta: StreamDelta) -> None:
        if self.callback is None:
            return
        try:
            self.callback(delta)
        except Exception as exc:
            raise StreamCallbackError(exc) from exc


def text_pieces(text: str, count: int = 4) -> list[str]:
    """`text` cut at word boundaries into at most `count` pieces that join back to it."""
    if count <= 1 or len(text) < 2:
        return [text] if text else []
    words = re.findall(r"\s*\S+|\s+$", text)
    if len(words) < 2:
        step = max(1, -(-len(text) // count))
        return [text[i : i + step] for i in range(0, len(text), step)]
    per = -(-len(words) // count)
    return ["".join(words[i : i + per]) for i in range(0, len(words), per)]
