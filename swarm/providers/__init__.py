"""LLM providers: one async interface (base.py), the backends behind it, and the Router
that picks a backend per `vendor/model` id. Vendor SDKs are imported only when a backend
that needs them is built."""

from swarm.providers.base import (
    Completion,
    CompletionRequest,
    Message,
    NoRouteError,
    Provider,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
    ProviderTransientError,
    Usage,
)
from swarm.providers.pricing import cost_usd
from swarm.providers.replay import RecordingProvider, ReplayProvider, request_key
from swarm.providers.retry import RetryingProvider
from swarm.providers.router import KNOWN_KEY_ENVS, RouteInfo, Router, router_build

__all__ = [
    "KNOWN_KEY_ENVS",
    "Completion",
    "CompletionRequest",
    "Message",
    "NoRouteError",
    "Provider",
    "ProviderAuthError",
    "ProviderBadRequest",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeout",
    "ProviderTransientError",
    "RecordingProvider",
    "ReplayProvider",
    "RetryingProvider",
    "RouteInfo",
    "Router",
    "Usage",
    "cost_usd",
    "request_key",
    "router_build",
]
