"""The one async interface every LLM backend speaks, and the errors it raises.

A backend turns a CompletionRequest into a Completion. Retries, routing and recording
live around backends (swarm.providers.retry, .router, .replay), not inside them.

Messages: `content` is a plain string (`Message("user", "hi")`) or a tuple of blocks:
TextBlock, ToolCall (an assistant asking for a tool) and ToolResult (a user message
answering it). Tools the model may call are ToolSpecs on the request; a Completion that
ends in tool calls has `stop_reason == "tool_calls"` and the calls in `tool_calls`.

Streaming: `CompletionRequest.on_delta`, when set, is called with a StreamDelta for each
piece of answer text as it arrives. It is not part of what a request means: cassette keys
and recordings leave it out, and without it no backend asks for a stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Why a completion ended, the same words for every backend.
STOP_END = "end"  # the model finished its answer (or a stop sequence ended it)
STOP_TOOL_CALLS = "tool_calls"  # the model wants the tools in Completion.tool_calls run
STOP_MAX_TOKENS = "max_tokens"  # cut at the request's max_tokens
STOP_REFUSAL = "refusal"  # the vendor's safety system stopped it (content filter, refusal)
STOP_OTHER = "other"  # anything else a vendor reports (e.g. Anthropic's pause_turn)


@dataclass(frozen=True)
class TextBlock:
    text: str


@dataclass(frozen=True)
class ToolCall:
    """The model asks for tool `name` with `arguments`; `id` pairs it with its result."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    """What running the tool of call `call_id` gave; sent back in a user message."""

    call_id: str
    content: str
    is_error: bool = False


Block = TextBlock | ToolCall | ToolResult


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: `input_schema` is the JSON Schema of its arguments."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str | tuple[Block, ...]

    def __post_init__(self) -> None:
        if isinstance(self.content, list):
            object.__setattr__(self, "content", tuple(self.content))

    @property
    def text(self) -> str:
        """The message's text: the string, or its TextBlocks joined by newlines."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(b.text for b in self.content if isinstance(b, TextBlock))

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        if isinstance(self.content, str):
            return ()
        return tuple(b for b in self.content if isinstance(b, ToolCall))

    @property
    def tool_results(self) -> tuple[ToolResult, ...]:
        if isinstance(self.content, str):
            return ()
        return tuple(b for b in self.content if isinstance(b, ToolResult))


@dataclass(frozen=True)
class StreamDelta:
    """One piece of a streamed answer.

    `attempt` is the call (1-based) of a retried request the piece belongs to. `restart`
    True (with empty text) means: the text streamed so far for this request is void, drop
    it; it comes when a retry begins after pieces were streamed, or when a backend
    replaced its answer (a CLI tool writing a second message). After `complete` raises,
    whatever was streamed for that request is void as well."""

    text: str
    attempt: int = 1
    restart: bool = False


DeltaCallback = Callable[[StreamDelta], None]


@dataclass(frozen=True)
class CompletionRequest:
    model: str  # the vendor/model id as the profile names it, e.g. "anthropic/claude-opus-4.1"
    messages: tuple[Message, ...]
    json_schema: dict[str, Any] | None = None  # ask for JSON matching this schema
    schema_name: str = "answer"
    max_tokens: int = 4096
    temperature: float = 0.2
    timeout: float = 120.0
    # Who is asking, so offline/replay backends and recordings can key on it.
    # e.g. {"stage": "plan", "role": "skeptic", "round": 1, "run_id": 7}
    metadata: dict[str, Any] = field(default_factory=dict)
    # Tools the model may call. tool_choice: None or "auto" (the model decides),
    # "required" (it must call one), "none" (it must not), or a tool's name (that one).
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | None = None
    # Cache hints: the first `cache_prefix` messages are a stable prefix that later
    # requests repeat (Anthropic gets cache_control breakpoints there); `cache_key` groups
    # requests sharing a prefix (OpenAI's prompt_cache_key; derived from the prefix when
    # None). Neither changes the answer, so cassette keys leave them out.
    cache_prefix: int = 0
    cache_key: str | None = None
    # Of those, the first `cache_shared` are shared more widely (every call of the run,
    # across stages): Anthropic gets one more breakpoint there and one after the tool
    # definitions, which every call with them repeats.
    cache_shared: int = 0
    # The answer schemas of the calls that share this request's prefix, (name, schema) in
    # one fixed order, this request's (schema_name) among them. A backend that sends the
    # answer schema as a tool sends them all, so those calls' tool definitions (the head
    # of the cached prefix) are identical; the answer still comes from schema_name's. Empty:
    # only this request's. Like the cache hints, it leaves the cassette key alone.
    answer_schemas: tuple[tuple[str, dict[str, Any]], ...] = ()
    # Called with each piece of answer text as it arrives (see StreamDelta). Never
    # serialised, never part of a cassette key.
    on_delta: DeltaCallback | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("messages", "tools", "answer_schemas"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if self.cache_prefix < 0:
            raise ValueError(f"cache_prefix must be >= 0, got {self.cache_prefix}")
        if not 0 <= self.cache_shared <= self.cache_prefix:
            raise ValueError(
                f"cache_shared must be in [0, cache_prefix={self.cache_prefix}], "
                f"got {self.cache_shared}"
            )


@dataclass(frozen=True)
class Usage:
    """Token counts of one call. `input_tokens` counts ALL input tokens, cached ones
    included; `cached_input_tokens` of them were read from the prompt cache and
    `cache_write_tokens` of them were written to it (Anthropic; OpenAI writes for free).
    So the input tokens billed at the full rate are input - cached - cache writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def uncached_input_tokens(self) -> int:
        return max(self.input_tokens - self.cached_input_tokens - self.cache_write_tokens, 0)


@dataclass(frozen=True)
class Completion:
    text: str  # the answer text; for tool calls, any text the model wrote before them
    parsed: Any | None  # the JSON the text holds, when the request asked for JSON and it parsed
    usage: Usage
    cost_usd: float
    latency_s: float
    provider: str  # backend name: "offline", "anthropic", ...
    model: str
    attempts: int = 1  # calls made, retries included
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: str = STOP_END  # one of the STOP_* words above

    def assistant_message(self) -> Message:
        """This answer as the assistant turn of the conversation's next request."""
        if not self.tool_calls:
            return Message("assistant", self.text)
        blocks: tuple[Block, ...] = (TextBlock(self.text),) if self.text else ()
        return Message("assistant", (*blocks, *self.tool_calls))


def tools_check(request: CompletionRequest, *, reserved: str | None = None) -> None:
    """Raise ProviderBadRequest when the request's tools cannot be sent: two with one name,
    one named `reserved` (a backend's own answer tool), or a tool_choice naming none."""
    names = [t.name for t in request.tools]
    if len(set(names)) != len(names):
        raise ProviderBadRequest(f"two tools share a name: {', '.join(sorted(names))}")
    if reserved is not None and reserved in names:
        raise ProviderBadRequest(f"tool name {reserved!r} is taken by the structured answer")
    choice = request.tool_choice
    if choice not in (None, "auto", "required", "none") and choice not in names:
        raise ProviderBadRequest(
            f"tool_choice {choice!r} names no tool of the request ({', '.join(names) or 'none'})"
        )


# --- plain-data forms, for cassettes and keys -----------------------------------------------
def block_to_dict(block: Block) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolCall):
        return {
            "type": "tool_call",
            "id": block.id,
            "name": block.name,
            "arguments": block.arguments,
        }
    if isinstance(block, ToolResult):
        return {
            "type": "tool_result",
            "call_id": block.call_id,
            "content": block.content,
            "is_error": block.is_error,
        }
    raise TypeError(f"not a message block: {type(block).__name__}")


def block_from_dict(data: dict[str, Any]) -> Block:
    kind = data.get("type")
    if kind == "text":
        return TextBlock(str(data.get("text", "")))
    if kind == "tool_call":
        return ToolCall(str(data["id"]), str(data["name"]), dict(data.get("arguments") or {}))
    if kind == "tool_result":
        return ToolResult(
            str(data["call_id"]), str(data.get("content", "")), bool(data.get("is_error"))
        )
    raise ValueError(f"unknown message block type {kind!r}")


def message_to_dict(message: Message) -> dict[str, Any]:
    """{"role", "content"}: content a string, or a list of typed block dicts."""
    content: Any = message.content
    if not isinstance(content, str):
        content = [block_to_dict(b) for b in content]
    return {"role": message.role, "content": content}


def message_from_dict(data: dict[str, Any]) -> Message:
    content = data.get("content", "")
    if isinstance(content, list):
        return Message(str(data["role"]), tuple(block_from_dict(b) for b in content))
    return Message(str(data["role"]), str(content))


def tool_spec_to_dict(spec: ToolSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def tool_call_from_dict(data: dict[str, Any]) -> ToolCall:
    return ToolCall(str(data["id"]), str(data["name"]), dict(data.get("arguments") or {}))


# --- errors ---------------------------------------------------------------------------------
class ProviderError(Exception):
    """A backend failed. `retryable` says whether the same request may succeed later."""

    retryable = False

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ProviderTransientError(ProviderError):
    """429, 5xx, 529, a timeout, a dropped connection or a stream cut mid-answer: worth
    retrying."""

    retryable = True


class ProviderTimeout(ProviderTransientError):
    """The backend did not answer within the request's timeout."""


class ProviderAuthError(ProviderError):
    """401 / 403 or a missing key: retrying cannot help."""


class ProviderBadRequest(ProviderError):
    """400: the request itself is wrong (or asks for something the backend cannot do)."""


class ProviderResponseError(ProviderError):
    """The backend answered, but with something that is not a usable completion."""


class NoRouteError(ProviderError):
    """No backend serves this model id, or its key variable is not set."""


@runtime_checkable
class Provider(Protocol):
    name: str

    async def complete(self, request: CompletionRequest) -> Completion: ...
