"""What each backend can do per model (and base URL), so callers adapt instead of failing.

`capabilities_default` holds what is known of each backend. A CapabilityStore layers what
was learned on top: a server that refused a feature (llama.cpp refusing
`response_format: json_schema`, a gateway without tool calling) is marked with `refuse`
and every later request to that (backend, base URL, model) adapts. The store is in
memory, shared by the routers of one process (DEFAULT_STORE) and safe across threads.

Structured-output modes, in the order a refusal falls back through them:
- "tool": a forced tool call whose input schema is the answer's (Anthropic).
- "json_schema": OpenAI's `response_format: {"type": "json_schema", ...}`; the codex CLI's
  `--output-schema`.
- "json_object": `response_format: {"type": "json_object", "schema": {...}}`, which
  llama.cpp's server accepts where it refuses json_schema.
- "prompt": the schema goes into the prompt and the answer is parsed locally.
Cache modes: "breakpoints" (Anthropic cache_control on the stable prefix), "key" (OpenAI's
automatic prefix cache, steered by prompt_cache_key), "none" (no hint sent).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

logger = logging.getLogger("tekton.swarm.providers.capabilities")

STRUCTURED_MODES = ("tool", "json_schema", "json_object", "prompt")
CACHE_MODES = ("breakpoints", "key", "none")
# Features `refuse` knows: a structured mode, or one of these.
FEATURES = (*STRUCTURED_MODES[:-1], "tools", "streaming", "cache")
OPENAI_BASE_URL = "https://api.openai.com/v1"

# Per backend, the structured modes it can send, best first.
_STRUCTURED_CHAIN: dict[str, tuple[str, ...]] = {
    "anthropic": ("tool", "prompt"),
    "openai": ("json_schema", "json_object", "prompt"),
    "codex-cli": ("json_schema", "prompt"),
    "claude-cli": ("prompt",),
    "offline": ("json_schema",),
    "replay": ("json_schema",),
}


@dataclass(frozen=True)
class Capabilities:
    structured: str  # one of STRUCTURED_MODES
    tools: bool  # native tool calling
    streaming: bool  # text deltas as they are generated (else on_delta gets the whole answer once)
    cache: str = "none"  # one of CACHE_MODES

    def summary(self) -> str:
        """e.g. "json_schema, tools, streaming, cache key" (for --explain)."""
        parts = [f"structured {self.structured}"]
        if self.tools:
            parts.append("tools")
        if self.streaming:
            parts.append("streaming")
        if self.cache != "none":
            parts.append(f"cache {self.cache}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Capabilities:
        structured = str(data.get("structured") or "prompt")
        cache = str(data.get("cache") or "none")
        return cls(
            structured=structured if structured in STRUCTURED_MODES else "prompt",
            tools=bool(data.get("tools")),
            streaming=bool(data.get("streaming")),
            cache=cache if cache in CACHE_MODES else "none",
        )


def _normal_url(backend: str, base_url: str | None) -> str:
    if not base_url:
        return OPENAI_BASE_URL if backend == "openai" else ""
    return base_url.strip().rstrip("/").lower()


def capabilities_default(backend: str, model: str, base_url: str | None = None) -> Capabilities:
    """What `backend` can do for `model` (the id on the wire) at `base_url`, before anything
    was learned. An OpenAI-compatible server other than OpenAI is assumed to do all that
    OpenAI does except take a cache key; refusals correct that per server and model."""
    if backend == "anthropic":
        return Capabilities("tool", tools=True, streaming=True, cache="breakpoints")
    if backend == "openai":
        is_openai = _normal_url(backend, base_url) == OPENAI_BASE_URL
        return Capabilities(
            "json_schema", tools=True, streaming=True, cache="key" if is_openai else "none"
        )
    if backend == "codex-cli":
        return Capabilities("json_schema", tools=False, streaming=True)
    if backend == "claude-cli":
        return Capabilities("prompt", tools=False, streaming=True)
    # offline and replay answer whatever they are asked, tools and streams included.
    return Capabilities("json_schema", tools=True, streaming=True)


class CapabilityStore:
    """Capabilities per (backend, base URL, model): the defaults, replaced by `set`, minus
    the features marked with `refuse`. Every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set: dict[tuple[str, str, str], Capabilities] = {}
        self._refused: dict[tuple[str, str, str], set[str]] = {}
        self._on_refuse: Callable[[str, str, str, str, str], None] | None = None
        self._load: Callable[[], Iterable[tuple[str, str, str, str]]] | None = None

    def remember_with(
        self,
        *,
        on_refuse: Callable[[str, str, str, str, str], None],
        load: Callable[[], Iterable[tuple[str, str, str, str]]],
    ) -> None:
        """Keep what is learned beyond this process: `on_refuse(backend, base_url, model,
        feature, detail)` after each new refusal, and `load()` (once, on the next read)
        yields the (backend, base_url, model, feature) refusals other processes learned.
        Both are the caller's (the Django side stores them); a failing one is logged."""
        with self._lock:
            self._on_refuse, self._load = on_refuse, load

    def _loaded(self) -> None:
        with self._lock:
            load, self._load = self._load, None
        if load is None:
            return
        try:
            learned = list(load())
        except Exception:  # the store works from defaults without them
            logger.warning("capabilities: could not load what was learned", exc_info=True)
            return
        with self._lock:
            for backend, base_url, model, feature in learned:
                if feature in FEATURES:
                    key = self._key(backend, model, base_url)
                    self._refused.setdefault(key, set()).add(feature)

    @staticmethod
    def _key(backend: str, model: str, base_url: str | None) -> tuple[str, str, str]:
        return (backend, _normal_url(backend, base_url), model)

    def get(self, backend: str, model: str, base_url: str | None = None) -> Capabilities:
        if self._load is not None:
            self._loaded()
        key = self._key(backend, model, base_url)
        with self._lock:
            base = self._set.get(key) or capabilities_default(backend, model, base_url)
            refused = set(self._refused.get(key, ()))
        return _without(backend, base, refused)

    def set(
        self, backend: str, model: str, base_url: str | None, capabilities: Capabilities
    ) -> None:
        """Replace what is known (a probe's result, an operator's setting); clears refusals."""
        key = self._key(backend, model, base_url)
        with self._lock:
            self._set[key] = capabilities
            self._refused.pop(key, None)

    def refuse(
        self, backend: str, model: str, base_url: str | None, feature: str, detail: str = ""
    ) -> Capabilities:
        """Mark `feature` (a structured mode, "tools", "streaming" or "cache") as refused
        by this server for this model; returns the capabilities now in force. Refusing a
        structured mode falls back to the next one the backend can send. `detail` (the
        server's words) goes to the remember_with listener with a new refusal."""
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r} (known: {', '.join(FEATURES)})")
        key = self._key(backend, model, base_url)
        with self._lock:
            new = feature not in self._refused.get(key, set())
            self._refused.setdefault(key, set()).add(feature)
            listener = self._on_refuse
        if new and listener is not None:
            try:
                listener(backend, key[1], model, feature, detail)
            except Exception:  # remembering is a bonus; the refusal holds in this process
                logger.warning("capabilities: could not remember a refusal", exc_info=True)
        return self.get(backend, model, base_url)

    def clear(self) -> None:
        with self._lock:
            self._set.clear()
            self._refused.clear()


def _without(backend: str, caps: Capabilities, refused: set[str]) -> Capabilities:
    if not refused:
        return caps
    chain = _STRUCTURED_CHAIN.get(backend, STRUCTURED_MODES)
    start = chain.index(caps.structured) if caps.structured in chain else 0
    structured = next((m for m in chain[start:] if m not in refused), "prompt")
    return Capabilities(
        structured=structured,
        tools=caps.tools and "tools" not in refused,
        streaming=caps.streaming and "streaming" not in refused,
        cache="none" if "cache" in refused else caps.cache,
    )


def capabilities_refused(
    backend: str, model: str, base_url: str | None, refused: Iterable[str]
) -> Capabilities:
    """The defaults of (backend, model, base URL) once `refused` features are taken away:
    what a store that learned them sends (for the checks page, which reads the record)."""
    return _without(backend, capabilities_default(backend, model, base_url), set(refused))


# The process-wide store: what one run learns of a server, the next run knows.
DEFAULT_STORE = CapabilityStore()
