"""The vendors' prompt caches, as their documentation describes them, for the fake server.

Tokens: the fake counts one token per 4 characters of the request's canonical JSON
(tools, system, messages; OpenAI's response_format too), so a longer prompt costs more
and a shared prefix is a shared count. A prefix is cached under a hash of what it holds.

Anthropic (explicit breakpoints): the prefix order is tools, system, messages; a block
with `cache_control` (at most 4 in a request, more is a 400) ends a cacheable prefix,
and only one of at least the model's minimum length (1,024 tokens; 2,048 for Sonnet 4.6
and the Haiku 3s; 4,096 for Opus 4.5+ and Haiku 4.5) is written, at the breakpoint
only. `tool_choice` belongs to the messages tier: changing it invalidates the message
blocks' cache, never the tools' or the system's ("Changes to tool_choice parameter only
affect message blocks", Anthropic's cache invalidation table). From each breakpoint the lookup walks back block by block, up to 20 blocks, for a
prefix an earlier request wrote; a call reads the longest found
(`cache_read_input_tokens`) and writes its last eligible breakpoint beyond that
(`cache_creation_input_tokens`, billed at 1.25x); `input_tokens` is the rest.

OpenAI (automatic): a prompt of at least 1,024 tokens is cached; a later prompt reads
the longest cached prefix in steps of 128 tokens from 1,024
(`prompt_tokens_details.cached_tokens`), and writes cost nothing extra.

Both: an entry lives 5 minutes from its last use, and what a call writes is readable
only once that call has finished: the cache looks up at arrival and stores on
completion, so parallel calls with one prefix all miss (all write, for Anthropic).
With `enabled=False` the cache counts tokens and never hits: the same run, uncached.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4
MAX_BREAKPOINTS = 4  # Anthropic: cache_control on at most 4 blocks of a request
LOOKBACK_BLOCKS = 20  # Anthropic: how far before a breakpoint it looks for a hit
TTL_S = 300.0
OPENAI_MIN_TOKENS = 1024
OPENAI_STEP_TOKENS = 128
ANTHROPIC_DEFAULT_MIN = 1024
# Model id fragments -> minimum cacheable prompt length (most specific first).
ANTHROPIC_MIN_TOKENS = (
    ("opus-4-6", 4096),
    ("opus-4.6", 4096),
    ("opus-4-5", 4096),
    ("opus-4.5", 4096),
    ("haiku-4-5", 4096),
    ("haiku-4.5", 4096),
    ("sonnet-4-6", 2048),
    ("sonnet-4.6", 2048),
    ("3-5-haiku", 2048),
    ("3.5-haiku", 2048),
    ("3-haiku", 2048),
)


def tokens_of(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def anthropic_min_tokens(model: str) -> int:
    model = model.lower()
    return next((n for part, n in ANTHROPIC_MIN_TOKENS if part in model), ANTHROPIC_DEFAULT_MIN)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _without_cache_control(block: Any) -> Any:
    if isinstance(block, dict):
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


class CacheRequestError(ValueError):
    """The request breaks a caching rule the vendor answers with a 400."""


@dataclass(frozen=True)
class CacheUse:
    """What one call reads and writes; `commit` stores its prefixes once it finished."""

    input_tokens: int  # all input tokens
    cached_tokens: int
    cache_write_tokens: int
    commit: Callable[[], None]


class PromptCache:
    def __init__(self, *, enabled: bool = True, clock: Callable[[], float] = time.monotonic):
        self.enabled = enabled
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, float] = {}  # prefix hash -> when it expires

    # --- the store ---------------------------------------------------------------------
    def _hit(self, key: str) -> bool:
        with self._lock:
            expires = self._entries.get(key)
            if expires is None or expires < self.clock():
                return False
            self._entries[key] = self.clock() + TTL_S  # a read refreshes the entry
            return True

    def _store(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._entries[key] = self.clock() + TTL_S

    # --- Anthropic ---------------------------------------------------------------------
    def anthropic(self, body: dict[str, Any]) -> CacheUse:
        blocks: list[tuple[Any, bool]] = []  # (the block as cached, ends a breakpoint)
        for tool in body.get("tools") or []:
            blocks.append((_without_cache_control(tool), "cache_control" in tool))
        system = body.get("system") or []
        if isinstance(system, str):
            system = [{"type": "text", "text": system}]
        for block in system:
            blocks.append((_without_cache_control(block), "cache_control" in block))
        first_message = len(blocks)
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            for block in content or []:
                marked = isinstance(block, dict) and "cache_control" in block
                cached = {"role": message.get("role"), **_without_cache_control(block)}
                blocks.append((cached, marked))
        marks = sum(marked for _, marked in blocks)
        if marks > MAX_BREAKPOINTS:
            raise CacheRequestError(
                f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                f"Found {marks}."
            )
        model = str(body.get("model") or "")
        digest = hashlib.sha256(b"anthropic\0" + model.encode())
        chars = 0
        ends: list[tuple[int, str]] = []  # (prefix tokens, prefix hash) at each block's end
        points: list[int] = []  # the blocks that carry a breakpoint
        for i, (block, marked) in enumerate(blocks):
            if i == first_message:
                # What tool_choice asks is part of every message block's prefix, not a token.
                digest.update(b"tool_choice\0" + _canonical(body.get("tool_choice")).encode())
            text = _canonical(block)
            chars += len(text)
            digest.update(text.encode() + b"\0")
            ends.append((tokens_of(chars), digest.hexdigest()))
            if marked:
                points.append(i)
        total = tokens_of(chars)
        eligible = [i for i in points if ends[i][0] >= anthropic_min_tokens(model)]
        if not self.enabled or not eligible:
            return CacheUse(total, 0, 0, lambda: None)
        read = 0
        for i in reversed(eligible):
            # From a breakpoint back to LOOKBACK_BLOCKS earlier block ends: the longest
            # prefix an earlier request wrote.
            for j in range(i, max(i - LOOKBACK_BLOCKS, 0) - 1, -1):
                if self._hit(ends[j][1]):
                    read = max(read, ends[j][0])
                    break
        written = max(ends[eligible[-1]][0] - read, 0)
        return CacheUse(total, read, written, lambda: self._store([ends[i][1] for i in eligible]))

    # --- OpenAI ------------------------------------------------------------------------
    def openai(self, body: dict[str, Any]) -> CacheUse:
        parts = [body.get("tools") or [], body.get("response_format") or {}]
        text = "".join(_canonical(p) for p in parts) + "".join(
            _canonical(m) for m in body.get("messages") or []
        )
        total = tokens_of(len(text))
        if not self.enabled or total < OPENAI_MIN_TOKENS:
            return CacheUse(total, 0, 0, lambda: None)
        model = str(body.get("model") or "")
        keys: list[tuple[int, str]] = []
        digest = hashlib.sha256(b"openai\0" + model.encode())
        done = 0
        for size in range(OPENAI_MIN_TOKENS, total + 1, OPENAI_STEP_TOKENS):
            end = size * CHARS_PER_TOKEN
            digest.update(text[done:end].encode())
            done = end
            keys.append((size, digest.copy().hexdigest()))
        read = next((n for n, key in reversed(keys) if self._hit(key)), 0)
        return CacheUse(total, read, 0, lambda: self._store([k for _, k in keys]))
