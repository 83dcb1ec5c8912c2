"""Which backend answers which `vendor/model` id, and the one `complete` the engine calls.

Routes are tried in order: the profile's own routes first, then the built-in ones below.
A route is a dict {"match": glob on the model id, "backend": name, "key_env": env var
name or None, "base_url": str or None, "strip_prefix": bool}, optionally with
"base_url_env" (an env var that overrides base_url when set) and "key_header" (a header
that also carries the key, e.g. Portkey's x-portkey-api-key). Routes name key variables;
key values are read from the environment when a backend is built and never kept in a
route, an error message or a log.

Modes (`backend_override`, else env TEKTON_LLM_BACKEND, default "auto"):
- "offline": every model is answered by the offline backend.
- "replay": every model is answered from the cassette at `replay_path`.
- "auto": when none of the known key variables is set, everything goes offline (a
  newcomer with no keys gets a working product), except routes that need no key and were
  asked for by name (profile routes without key_env, `codex/*`, `claude-cli/*`).
  Otherwise each model goes to its route. A built-in vendor route that cannot serve
  (its key variable unset, its command missing) falls through to a configured gateway
  (OpenRouter, Portkey, AIMLAPI: they serve every vendor's ids); with no gateway it
  raises NoRouteError naming the variable. A profile route is strict: its missing key
  is an error.

What a model's backend can do (structured-output mode, tools, streaming, cache hints) is
`capabilities(model)`, read from a CapabilityStore (swarm.providers.capabilities) that
the backends consult too; `capability_refuse` marks a feature a server refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import os
import re
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from swarm.providers.anthropic_backend import anthropic_model_id
from swarm.providers.base import Completion, CompletionRequest, NoRouteError, Provider
from swarm.providers.capabilities import (
    DEFAULT_STORE,
    Capabilities,
    CapabilityStore,
    capabilities_default,
)
from swarm.providers.cli_backends import ClaudeCliBackend, CodexCliBackend, cli_binary
from swarm.providers.limits import LimitedProvider, RateLimiter, bucket_key
from swarm.providers.pricing import Prices, usage_cost_usd
from swarm.providers.pricing import price_for as table_price_for
from swarm.providers.replay import RecordingProvider, ReplayProvider
from swarm.providers.retry import RetryingProvider

MODE_ENV = "TEKTON_LLM_BACKEND"
MODES = ("auto", "offline", "replay")
BACKENDS = ("offline", "anthropic", "openai", "codex-cli", "claude-cli")
KNOWN_KEY_ENVS = (
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "OPENROUTER_API_KEY",
    "PORTKEY_API_KEY",
    "AIMLAPI_API_KEY",
)
OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
PORTKEY_BASE_URL = "https://api.portkey.ai/v1"
AIMLAPI_BASE_URL = "https://api.aimlapi.com/v1"

_ROUTE_FIELDS = {
    "match",
    "backend",
    "key_env",
    "base_url",
    "strip_prefix",
    "base_url_env",
    "key_header",
}
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")


def _route(match: str, backend: str, **extra: Any) -> dict[str, Any]:
    return {
        "match": match,
        "backend": backend,
        "key_env": None,
        "base_url": None,
        "strip_prefix": False,
    } | extra


# Gateways are last: they serve any vendor/model id, under its full name.
_GATEWAY_ROUTES: tuple[dict[str, Any], ...] = (
    _route("*/*", "openai", key_env="OPENROUTER_API_KEY", base_url=OPENROUTER_BASE_URL),
    _route(
        "*/*",
        "openai",
        key_env="PORTKEY_API_KEY",
        base_url=PORTKEY_BASE_URL,
        base_url_env="PORTKEY_BASE_URL",
        key_header="x-portkey-api-key",
    ),
    _route("*/*", "openai", key_env="AIMLAPI_API_KEY", base_url=AIMLAPI_BASE_URL),
)
BUILTIN_ROUTES: tuple[dict[str, Any], ...] = (
    _route("offline/*", "offline"),
    _route(
        "anthropic/*",
        "anthropic",
        key_env="ANTHROPIC_API_KEY",
        base_url_env="ANTHROPIC_BASE_URL",
        strip_prefix=True,
    ),
    _route("openai/gpt-5-codex", "codex-cli", strip_prefix=True),
    _route("codex/*", "codex-cli", strip_prefix=True),
    _route("claude-cli/*", "claude-cli", strip_prefix=True),
    _route(
        "openai/*",
        "openai",
        key_env="OPENAI_API_KEY",
        base_url_env="OPENAI_BASE_URL",
        strip_prefix=True,
    ),
    *_GATEWAY_ROUTES,
)
# Built-in routes that need no key and that a model id asks for by name.
_KEYLESS_BY_NAME = ("offline/*", "codex/*", "claude-cli/*")


@dataclasses.dataclass(frozen=True)
class RouteInfo:
    backend: str  # "offline" | "replay" | "anthropic" | "openai" | "codex-cli" | "claude-cli"
    upstream_model: str  # the id sent on the wire
    key_env: str | None  # the variable holding the key (its name, never its value)
    base_url: str | None
    key_header: str | None = None  # an extra header that carries the key (Portkey)


def routes_validate(routes: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Profile routes, checked and filled with defaults. Raises NoRouteError saying which
    route is wrong and why. A key_env that does not look like a variable name is refused
    without echoing it: it may be a pasted key."""
    if routes is None:
        return []
    if not isinstance(routes, list):
        raise NoRouteError(f"routes must be a list of route objects, got {type(routes).__name__}")
    checked = []
    for i, raw in enumerate(routes, start=1):
        if not isinstance(raw, dict):
            raise NoRouteError(f"route {i} must be an object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - _ROUTE_FIELDS)
        if unknown:
            raise NoRouteError(
                f"route {i}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_ROUTE_FIELDS))})"
            )
        match = raw.get("match")
        if not isinstance(match, str) or not match.strip():
            raise NoRouteError(f"route {i}: 'match' must be a glob such as 'x-ai/*'")
        backend = raw.get("backend")
        if backend not in BACKENDS:
            raise NoRouteError(
                f"route {i} ({match}): unknown backend {backend!r} (known: {', '.join(BACKENDS)})"
            )
        for field in ("key_env", "base_url_env"):
            value = raw.get(field)
            if value is not None and (not isinstance(value, str) or not _ENV_NAME.match(value)):
                raise NoRouteError(
                    f"route {i} ({match}): {field} must name an environment variable "
                    f"(e.g. OPENROUTER_API_KEY), never hold a key"
                )
        base_url = raw.get("base_url")
        if base_url is not None and (
            not isinstance(base_url, str) or not re.match(r"^https?://", base_url)
        ):
            raise NoRouteError(f"route {i} ({match}): base_url must start with http:// or https://")
        key_header = raw.get("key_header")
        if key_header is not None and (
            not isinstance(key_header, str) or not _HEADER_NAME.match(key_header)
        ):
            raise NoRouteError(f"route {i} ({match}): key_header must be an HTTP header name")
        strip = raw.get("strip_prefix", False)
        if not isinstance(strip, bool):
            raise NoRouteError(f"route {i} ({match}): strip_prefix must be true or false")
        checked.append(_route(match, backend) | {k: v for k, v in raw.items() if v is not None})
    return checked


class Router:
    """Resolves model ids to backends and completes requests through them.

    Build it with `router_build`. `resolve` and `describe` only validate (no network);
    `complete` calls the backend, with retries, recording and pricing."""

    def __init__(
        self,
        *,
        routes: list[dict[str, Any]],
        env: Mapping[str, str],
        mode: str,
        replay: ReplayProvider | None = None,
        record_path: str | None = None,
        retry_options: Mapping[str, Any] | None = None,
        capability_store: CapabilityStore | None = None,
        prices: Prices | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.routes = routes
        self.rate_limiter = rate_limiter
        self.prices = dict(prices or {})
        self.env = env
        self.mode = mode
        self.record_path = record_path
        self._replay = replay
        self._retry_options = dict(retry_options or {})
        self.capability_store = DEFAULT_STORE if capability_store is None else capability_store
        # SDK clients hold connections bound to the event loop that opened them, and
        # Celery tasks or web threads each run their own loop: one backend set per loop.
        self._backends: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple, Provider]
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    # --- resolution ------------------------------------------------------------------
    def has_any_key(self) -> bool:
        """Whether any known key variable, or one a profile route names, is set."""
        names = {*KNOWN_KEY_ENVS, *(r["key_env"] for r in self.routes if r.get("key_env"))}
        return any(self.env.get(name) for name in names)

    def resolve(self, model: str) -> RouteInfo:
        """The backend that will answer `model`. Raises NoRouteError with the reason (a
        malformed id, a missing key variable by name, a missing command)."""
        if (
            not isinstance(model, str)
            or "/" not in model
            or model.startswith("/")
            or model.endswith("/")
        ):
            raise NoRouteError(f"model id must be vendor/model, got {model!r}")
        if self.mode == "offline":
            return RouteInfo("offline", model, None, None)
        if self.mode == "replay":
            return RouteInfo("replay", model, None, None)

        keyless_only = not self.has_any_key()
        for route in self.routes:
            if fnmatch.fnmatchcase(model, route["match"]):
                if keyless_only and route.get("key_env"):
                    return RouteInfo("offline", model, None, None)
                problem = self._unavailable(route, model)
                if problem:
                    raise NoRouteError(problem)
                return self._info(route, model)

        first_problem = None
        for route in BUILTIN_ROUTES:
            if not fnmatch.fnmatchcase(model, route["match"]):
                continue
            if first_problem and route not in _GATEWAY_ROUTES:
                continue  # an unavailable vendor route falls through to gateways only
            if keyless_only and route["match"] not in _KEYLESS_BY_NAME:
                return RouteInfo("offline", model, None, None)
            problem = self._unavailable(route, model)
            if problem and keyless_only:
                raise NoRouteError(problem)  # asked for by name: never swap in offline
            if problem is None:
                return self._info(route, model)
            if route in _GATEWAY_ROUTES:
                continue
            first_problem = first_problem or problem
        if first_problem:
            raise NoRouteError(first_problem)
        gateways = ", ".join(r["key_env"] for r in _GATEWAY_ROUTES)
        raise NoRouteError(f"model {model} needs a gateway: set one of {gateways} (none set)")

    def _unavailable(self, route: dict[str, Any], model: str) -> str | None:
        key_env = route.get("key_env")
        if key_env and not self.env.get(key_env):
            return f"model {model} needs env var {key_env} (not set)"
        if route["backend"] in ("codex-cli", "claude-cli"):
            cls = CodexCliBackend if route["backend"] == "codex-cli" else ClaudeCliBackend
            if cli_binary(cls.binary_env, cls.default_binary, self.env) is None:
                wanted = self.env.get(cls.binary_env) or cls.default_binary
                return (
                    f"model {model} needs the `{wanted}` command (not found; "
                    f"install it or set {cls.binary_env})"
                )
        return None

    def _info(self, route: dict[str, Any], model: str) -> RouteInfo:
        upstream = model.split("/", 1)[1] if route.get("strip_prefix") else model
        if route["backend"] == "anthropic":
            upstream = anthropic_model_id(upstream)
        base_url = route.get("base_url")
        if route.get("base_url_env") and self.env.get(route["base_url_env"]):
            base_url = self.env[route["base_url_env"]]
        return RouteInfo(
            backend=route["backend"],
            upstream_model=upstream,
            key_env=route.get("key_env"),
            base_url=base_url,
            key_header=route.get("key_header"),
        )

    def capabilities(self, model: str) -> Capabilities:
        """What the backend answering `model` can do: structured-output mode, tools,
        streaming, cache hints. In replay mode, what the recorded backend could do (as
        the cassette says). Raises NoRouteError like `resolve`; no network."""
        info = self.resolve(model)
        if info.backend == "replay":
            recorded = self._replay.capabilities(model) if self._replay is not None else None
            return recorded or capabilities_default("replay", model)
        return self.capability_store.get(info.backend, info.upstream_model, info.base_url)

    def capability_refuse(self, model: str, feature: str) -> Capabilities:
        """Mark `feature` (a structured mode, "tools", "streaming", "cache") as refused by
        the server answering `model`; returns the capabilities now in force for it."""
        info = self.resolve(model)
        return self.capability_store.refuse(
            info.backend, info.upstream_model, info.base_url, feature
        )

    def describe(self, model: str) -> str:
        """One line for --explain: "anthropic/claude-opus-4.1 -> anthropic (claude-opus-4-1,
        key ANTHROPIC_API_KEY) [structured tool, tools, streaming, cache breakpoints]", or
        "... -> no route: <reason>". Never raises."""
        try:
            info = self.resolve(model)
        except NoRouteError as exc:
            return f"{model} -> no route: {exc}"
        if info.backend in ("offline", "replay"):
            return f"{model} -> {info.backend}"
        where = f" at {info.base_url}" if info.base_url else ""
        details = [info.upstream_model]
        if info.key_env:
            details.append(f"key {info.key_env}")
        caps = self.capabilities(model).summary()
        return f"{model} -> {info.backend}{where} ({', '.join(details)}) [{caps}]"

    def price_for(self, model: str) -> tuple[float, float] | None:
        """(input, output) $/M tokens a call of `model` will cost here: (0, 0) when the
        offline or replay backend answers it, else the profile's price or the table's
        (None when neither knows it). A model with no route is priced from the table."""
        try:
            backend = self.resolve(model).backend
        except NoRouteError:
            backend = ""
        if backend in ("offline", "replay"):
            return (0.0, 0.0)
        return table_price_for(model, self.prices)

    # --- calls -------------------------------------------------------------------------
    def provider_for(self, info: RouteInfo) -> Provider:
        """The backend instance for `info`, created on first use in the running loop."""
        if info.backend == "replay":
            if self._replay is None:
                raise NoRouteError(
                    "replay mode needs a cassette path (record one with --record PATH)"
                )
            return self._replay
        loop = asyncio.get_running_loop()
        cache_key = (info.backend, info.base_url, info.key_env, info.key_header)
        with self._lock:
            per_loop = self._backends.setdefault(loop, {})
            backend = per_loop.get(cache_key)
            if backend is None:
                backend = self._backend_create(info)
                per_loop[cache_key] = backend
        return backend

    def _backend_create(self, info: RouteInfo) -> Provider:
        if info.backend == "offline":
            from swarm.providers.offline import OfflineProvider

            raw = self.env.get("TEKTON_OFFLINE_LATENCY_MS")
            try:
                latency = float(raw) if raw not in (None, "") else None
            except ValueError:
                raise NoRouteError(
                    f"TEKTON_OFFLINE_LATENCY_MS must be a number of milliseconds, got {raw!r}"
                ) from None
            return OfflineProvider(latency_ms=latency)
        if info.backend == "anthropic":
            from swarm.providers.anthropic_backend import AnthropicBackend

            return AnthropicBackend(
                env=self.env,
                key_env=info.key_env or "ANTHROPIC_API_KEY",
                base_url=info.base_url,
                capabilities=self.capability_store,
            )
        if info.backend == "openai":
            from swarm.providers.openai_backend import OpenAIBackend

            return OpenAIBackend(
                env=self.env,
                key_env=info.key_env,
                base_url=info.base_url,
                key_header=info.key_header,
                capabilities=self.capability_store,
            )
        if info.backend == "codex-cli":
            return CodexCliBackend(env=self.env)
        if info.backend == "claude-cli":
            return ClaudeCliBackend(env=self.env)
        raise NoRouteError(f"unknown backend {info.backend!r}")

    async def aclose(self) -> None:
        """Close the backends built in the running loop (their HTTP connections). Call it
        before the loop ends; a later `complete` builds fresh ones."""
        with self._lock:
            backends = list(self._backends.pop(asyncio.get_running_loop(), {}).values())
        for backend in backends:
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()

    async def complete(self, request: CompletionRequest) -> Completion:
        """Resolve `request.model`, call its backend with retries (RetryingProvider),
        append to the cassette when recording, and return the Completion under the
        profile's model id with `cost_usd` filled from pricing (cached input and cache
        writes at their own prices) when the backend left it 0. Stream pieces reach
        `request.on_delta` stamped with their attempt (see StreamDelta).
        With a rate limiter, each call (each retry too) first waits for its bucket.
        Raises NoRouteError before any call, or the backend's last ProviderError."""
        info = self.resolve(request.model)
        backend = self.provider_for(info)
        limit = (
            self.rate_limiter.limit_for(
                backend=info.backend, base_url=info.base_url, model=request.model
            )
            if self.rate_limiter is not None
            else None
        )
        if limit is not None:
            backend = LimitedProvider(
                backend,
                self.rate_limiter,  # type: ignore[arg-type]
                limit=limit,
                key=bucket_key(info.backend, request.model),
            )
        provider: Provider = _Routed(
            RetryingProvider(backend, **self._retry_options), info, self.prices
        )
        if self.record_path:
            provider = RecordingProvider(
                provider, self.record_path, capabilities=self.capabilities(request.model)
            )
        return await provider.complete(request)


class _Routed:
    """Sends the upstream model id on the wire and answers under the profile's id."""

    def __init__(self, inner: Provider, info: RouteInfo, prices: Prices | None = None) -> None:
        self.inner = inner
        self.info = info
        self.prices = prices
        self.name = inner.name

    async def complete(self, request: CompletionRequest) -> Completion:
        wire = request
        if self.info.upstream_model != request.model:
            wire = dataclasses.replace(request, model=self.info.upstream_model)
        completion = await self.inner.complete(wire)
        # Priced by the backend that answered: offline and replayed answers cost nothing.
        cost = completion.cost_usd
        if completion.provider in ("offline", "replay"):
            cost = 0.0
        elif not cost:
            cost = usage_cost_usd(request.model, completion.usage, self.prices)
        return dataclasses.replace(completion, model=request.model, cost_usd=cost)


def router_build(
    *,
    routes: list[dict] | None = None,
    env: Mapping[str, str] | None = None,
    backend_override: str | None = None,
    replay_path: str | None = None,
    record_path: str | None = None,
    retry_options: Mapping[str, Any] | None = None,
    capability_store: CapabilityStore | None = None,
    prices: Prices | None = None,
    rate_limiter: RateLimiter | None = None,
) -> Router:
    """A Router over the profile's `routes` (validated) then the built-in ones.

    `env` defaults to os.environ, read live. `retry_options` are RetryingProvider
    keyword arguments (tests pass a recording `sleep`). `capability_store` defaults to
    the process-wide one, so what one router learns of a server the next one knows.
    Raises NoRouteError for an unknown mode, bad routes, or replay mode without a
    readable cassette. `prices` are the profile's ({model id: (input, output) $/M}).
    `rate_limiter` (swarm.providers.limits) holds calls back to the configured limits."""
    env = os.environ if env is None else env
    mode = (backend_override or env.get(MODE_ENV) or "auto").strip().lower()
    if mode not in MODES:
        raise NoRouteError(f"{MODE_ENV} must be one of {', '.join(MODES)}, got {mode!r}")
    checked = routes_validate(routes)
    replay = None
    if mode == "replay":
        if not replay_path:
            raise NoRouteError("replay mode needs a cassette path (record one with --record PATH)")
        try:
            replay = ReplayProvider(replay_path)
        except Exception as exc:
            raise NoRouteError(str(exc)) from None
    return Router(
        routes=checked,
        env=env,
        mode=mode,
        replay=replay,
        record_path=record_path,
        retry_options=retry_options,
        capability_store=capability_store,
        prices=prices,
        rate_limiter=rate_limiter,
    )
