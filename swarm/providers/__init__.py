"""LLM providers: one async interface (base.py), the backends behind it, and the Router
that picks a backend per `vendor/model` id. Vendor SDKs are imported only when a backend
that needs them is built."""

from swarm.providers.base import (
    STOP_END,
    STOP_MAX_TOKENS,
    STOP_OTHER,
    STOP_REFUSAL,
    STOP_TOOL_CALLS,
    Completion,
    CompletionRequest,
    DeltaCallback,
    Message,
    NoRouteError,
    Provider,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
    ProviderTransientError,
    StreamDelta,
    TextBlock,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)
from swarm.providers.capabilities import (
    DEFAULT_STORE,
    Capabilities,
    CapabilityStore,
    capabilities_default,
)
from swarm.providers.pricing import cost_usd, usage_cost_usd
from swarm.providers.replay import RecordingProvider, ReplayProvider, request_key
from swarm.providers.retry import RetryingProvider
from swarm.providers.router import KNOWN_KEY_ENVS, RouteInfo, Router, router_build

__all__ = [
    "DEFAULT_STORE",
    "KNOWN_KEY_ENVS",
    "STOP_END",
    "STOP_MAX_TOKENS",
    "STOP_OTHER",
    "STOP_REFUSAL",
    "STOP_TOOL_CALLS",
    "Capabilities",
    "CapabilityStore",
    "Completion",
    "CompletionRequest",
    "DeltaCallback",
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
    "StreamDelta",
    "TextBlock",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "Usage",
    "capabilities_default",
    "cost_usd",
    "request_key",
    "router_build",
    "usage_cost_usd",
]
