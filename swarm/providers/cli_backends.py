"""Headless command-line tools as backends: `codex exec --json` and `claude -p`.

The prompt goes on stdin (never on the command line, where `ps` would show it). A call
that outlives the request's timeout has its whole process group killed, since both tools
start helpers of their own.

Standard output is read as it arrives. With an on_delta callback the answer streams:
codex's agent messages as each one completes, claude's text deltas from
`--output-format stream-json --include-partial-messages`. A tool that starts a new
message after streaming one sends a restart (the earlier text was not the answer).
Neither tool takes tool definitions from us: a request with tools is a ProviderBadRequest.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import contextvars
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from swarm.providers.base import (
    Completion,
    CompletionRequest,
    Message,
    NoRouteError,
    ProviderBadRequest,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
    ProviderTransientError,
    StreamDelta,
    TextBlock,
    ToolCall,
    ToolResult,
    Usage,
)
from swarm.providers.capabilities import Capabilities, capabilities_default
from swarm.providers.jsontext import json_from_text, schema_instruction
from swarm.providers.streaming import DeltaSink, StreamCallbackError
from swarm.redact import redact

_READ_CHUNK = 65536
# A caller that keeps the tool's own output (`tekton ask codex` journals it) sets this to
# a list; each call appends {"stdout", "stderr", "exit_status", "timed_out"}.
CLI_OUTPUT: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "tekton_cli_output", default=None
)


def cli_binary(env_var: str, default: str, env: Mapping[str, str] | None = None) -> str | None:
    """Absolute path of the tool named by `env[env_var]` (default `default`), or None."""
    env = os.environ if env is None else env
    return shutil.which(env.get(env_var) or default, path=env.get("PATH"))


def _render(m: Message) -> str:
    if isinstance(m.content, str):
        return m.content
    parts = []
    for b in m.content:
        if isinstance(b, TextBlock):
            parts.append(b.text)
        elif isinstance(b, ToolCall):
            parts.append(f"[called tool {b.name} ({b.id}) with {json.dumps(b.arguments)}]")
        elif isinstance(b, ToolResult):
            label = "error from" if b.is_error else "result of"
            parts.append(f"[{label} tool call {b.call_id}]\n{b.content}")
    return "\n\n".join(parts)


def render_prompt(request: CompletionRequest) -> str:
    """The messages as one text, since both tools take a single prompt."""
    parts = []
    for m in request.messages:
        parts.append(f"## {m.role.capitalize()}\n{_render(m)}")
    if request.json_schema is not None:
        parts.append("## Answer format\n" + schema_instruction(request.json_schema))
    return "\n\n".join(parts)


# What a command-line backend's environment keeps of ours: enough to run and find its own
# login, never another vendor's key, a database or broker URL, or Django's secret.
_ENV_KEPT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR",
             "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "SSL_CERT_FILE",
             "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")  # fmt: skip


class _CliBackend(abc.ABC):
    name = ""
    binary_env = ""
    default_binary = ""
    vendor_prefixes: tuple[str, ...] = ()
    key_envs: tuple[str, ...] = ()  # the variables this tool itself logs in with

    def child_env(self) -> dict[str, str]:
        """The scrubbed environment the tool runs with (its own key variables only)."""
        return {k: v for k in (*_ENV_KEPT, *self.key_envs) if (v := self._env.get(k))}

    def __init__(self, *, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env
        binary = cli_binary(self.binary_env, self.default_binary, self._env)
        if binary is None:
            wanted = self._env.get(self.binary_env) or self.default_binary
            raise NoRouteError(
                f"the {self.name} backend needs the `{wanted}` command, which was not found "
                f"(install it or point {self.binary_env} at it)"
            )
        self.binary = binary

    def capabilities(self, model: str) -> Capabilities:
        return capabilities_default(self.name, self.upstream(model))

    def upstream(self, model: str) -> str:
        for prefix in self.vendor_prefixes:
            if model.startswith(prefix):
                return model[len(prefix) :]
        return model

    @abc.abstractmethod
    def argv(
        self, request: CompletionRequest, schema_file: str | None, *, streaming: bool = False
    ) -> list[str]:
        """The tool's command line; the prompt itself goes on stdin."""

    @abc.abstractmethod
    def parse(self, stdout: str) -> tuple[str, Usage, float]:
        """(answer text, usage, cost in USD) from the tool's standard output."""

    @abc.abstractmethod
    def stream_line(self, line: str, sink: DeltaSink) -> None:
        """Feed the answer text one line of standard output carries to `sink`."""

    async def complete(self, request: CompletionRequest) -> Completion:
        if request.tools:
            raise ProviderBadRequest(f"{self.name}: the tool takes no tool definitions")
        streaming = request.on_delta is not None
        sink = DeltaSink(request.on_delta)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="tekton-cli-") as tmp:
            schema_file = None
            if request.json_schema is not None:
                schema_file = os.path.join(tmp, "schema.json")
                with open(schema_file, "w", encoding="utf-8") as fh:
                    json.dump(request.json_schema, fh)
            # In a stage with a workspace the tool works there (it may read the code);
            # elsewhere in an empty folder of its own, never in Tekton's checkout.
            workdir = request.metadata.get("workdir")
            cwd = workdir if isinstance(workdir, str) and os.path.isdir(workdir) else tmp
            kept = CLI_OUTPUT.get()
            try:
                stdout, stderr, code = await self._run(
                    self.argv(request, schema_file, streaming=streaming),
                    render_prompt(request),
                    request.timeout,
                    (lambda line: self.stream_line(line, sink)) if streaming else None,
                    cwd=cwd,
                )
            except StreamCallbackError as exc:
                raise exc.original from None
            except ProviderTimeout:
                if kept is not None:
                    kept.append(
                        {"stdout": "", "stderr": "", "exit_status": None, "timed_out": True}
                    )
                raise
            if kept is not None:
                kept.append(
                    {"stdout": stdout, "stderr": stderr, "exit_status": code, "timed_out": False}
                )
        latency = time.monotonic() - started
        if code != 0:
            first = next((line for line in stderr.splitlines() if line.strip()), "(no stderr)")
            raise ProviderError(
                f"{self.name}: exited with status {code}: {redact(first.strip())[:300]}"
            )
        text, usage, cost = self.parse(stdout)
        if not text.strip():
            raise ProviderResponseError(f"{self.name}: the tool printed no answer")
        parsed: Any = None
        if request.json_schema is not None:
            try:
                parsed = json_from_text(text)
            except ValueError as exc:
                raise ProviderResponseError(f"{self.name}: {redact(str(exc))}") from None
        if streaming and sink.text != text:
            # What streamed was not the final answer (or nothing streamed): say so, then
            # hand over the answer itself, so the pieces after the last restart are it.
            sink.restart()
            if request.on_delta is not None:
                request.on_delta(StreamDelta(text))
        return Completion(
            text=text,
            parsed=parsed,
            usage=usage,
            cost_usd=cost,
            latency_s=latency,
            provider=self.name,
            model=request.model,
        )

    async def _run(
        self,
        argv: list[str],
        prompt: str,
        timeout: float,
        on_line: Callable[[str], None] | None = None,
        *,
        cwd: str | None = None,
    ) -> tuple[str, str, int]:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so a kill reaches its helpers
            env=self.child_env(),
            cwd=cwd,
        )
        assert proc.stdin and proc.stdout and proc.stderr

        async def feed() -> None:
            try:
                proc.stdin.write(prompt.encode())
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the tool exited without reading it all; its status tells why
            finally:
                proc.stdin.close()

        async def read_out() -> bytes:
            # Chunks, not readline: one event line (a diff in JSON) can exceed any limit.
            chunks: list[bytes] = []
            pending = b""
            while chunk := await proc.stdout.read(_READ_CHUNK):
                chunks.append(chunk)
                if on_line is not None:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        on_line(line.decode("utf-8", "replace"))
            if on_line is not None and pending:
                on_line(pending.decode("utf-8", "replace"))
            return b"".join(chunks)

        try:
            async with asyncio.timeout(timeout):
                _, out, err = await asyncio.gather(feed(), read_out(), proc.stderr.read())
                await proc.wait()
        except TimeoutError:
            raise ProviderTimeout(f"{self.name}: no answer within {timeout:g} s (killed)") from None
        finally:
            # Timed out or cancelled (the run was), or the callback raised: never leave
            # the tool running.
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), proc.returncode or 0


def _json_line(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None  # progress lines that are not events
    return event if isinstance(event, dict) else None


class CodexCliBackend(_CliBackend):
    """`codex exec --json`: reads JSON-lines events, answers with the last agent message.

    Runs with a read-only sandbox: Tekton applies patches itself, the model only writes one.
    """

    name = "codex-cli"
    key_envs = ("OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_HOME")
    binary_env = "TEKTON_CODEX_BIN"
    default_binary = "codex"
    vendor_prefixes = ("openai/", "codex/")

    def argv(
        self, request: CompletionRequest, schema_file: str | None, *, streaming: bool = False
    ) -> list[str]:
        argv = [
            self.binary,
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--sandbox",
            "read-only",
            "--model",
            self.upstream(request.model),
        ]
        if schema_file:
            argv += ["--output-schema", schema_file]
        return [*argv, "-"]  # "-": the prompt comes on stdin

    @staticmethod
    def _agent_text(event: dict[str, Any]) -> str | None:
        # Current format: {"type": "item.completed", "item": {"type": "agent_message", "text"}};
        # older releases: {"msg": {"type": "agent_message", "message"}}.
        item = event.get("item") if isinstance(event.get("item"), dict) else None
        msg = event.get("msg") if isinstance(event.get("msg"), dict) else None
        if item and item.get("type") in ("agent_message", "assistant_message"):
            if event.get("type") in (None, "item.completed"):
                return str(item.get("text") or "") or None
        elif msg and msg.get("type") == "agent_message":
            return str(msg.get("message") or "") or None
        return None

    def stream_line(self, line: str, sink: DeltaSink) -> None:
        event = _json_line(line)
        text = self._agent_text(event) if event else None
        if text:
            sink.restart()  # a later agent message replaces the earlier one
            sink(text)

    def parse(self, stdout: str) -> tuple[str, Usage, float]:
        text = ""
        usage = Usage()
        for line in stdout.splitlines():
            event = _json_line(line)
            if event is None:
                continue
            text = self._agent_text(event) or text
            raw_usage = event.get("usage") if event.get("type") == "turn.completed" else None
            if isinstance(raw_usage, dict):
                # codex counts cached tokens inside input_tokens, as OpenAI does.
                usage = Usage(
                    input_tokens=int(raw_usage.get("input_tokens") or 0),
                    output_tokens=int(raw_usage.get("output_tokens") or 0),
                    cached_input_tokens=int(raw_usage.get("cached_input_tokens") or 0),
                )
        return text, usage, 0.0


class ClaudeCliBackend(_CliBackend):
    """`claude -p --output-format json`: one JSON object with the result, usage and cost.
    Streaming, `--output-format stream-json --verbose --include-partial-messages`: one
    event a line, text deltas inside "stream_event" lines, the same result object last."""

    name = "claude-cli"
    key_envs = ("ANTHROPIC_API_KEY", "CLAUDE_CONFIG_DIR")
    binary_env = "TEKTON_CLAUDE_BIN"
    default_binary = "claude"
    vendor_prefixes = ("claude-cli/", "anthropic/")

    def argv(
        self, request: CompletionRequest, schema_file: str | None, *, streaming: bool = False
    ) -> list[str]:
        if streaming:
            output = ["stream-json", "--verbose", "--include-partial-messages"]
        else:
            output = ["json"]
        return [
            self.binary,
            "-p",
            "--output-format",
            *output,
            "--model",
            self.upstream(request.model),
        ]

    def stream_line(self, line: str, sink: DeltaSink) -> None:
        event = _json_line(line)
        if not event or event.get("type") != "stream_event":
            return
        inner = event.get("event") if isinstance(event.get("event"), dict) else {}
        if inner.get("type") == "message_start":
            sink.restart()  # a new turn (after the tool's own tool use) replaces the last
        elif inner.get("type") == "content_block_delta":
            delta = inner.get("delta") if isinstance(inner.get("delta"), dict) else {}
            if delta.get("type") == "text_delta":
                sink(str(delta.get("text") or ""))

    def parse(self, stdout: str) -> tuple[str, Usage, float]:
        data: Any = None
        events = [e for e in map(_json_line, stdout.splitlines()) if e is not None]
        results = [e for e in events if e.get("type") == "result"]
        if results:
            data = results[-1]
        elif any(e.get("type") in ("system", "stream_event", "assistant") for e in events):
            # A stream of events that stops before its result: the tool was cut off.
            raise ProviderTransientError(f"{self.name}: output ended before the result")
        else:
            try:
                data = json_from_text(stdout)
            except ValueError:
                raise ProviderResponseError(
                    f"{self.name}: output is not the JSON result object"
                ) from None
        if not isinstance(data, dict):
            raise ProviderResponseError(f"{self.name}: output is not the JSON result object")
        if data.get("is_error"):
            raise ProviderError(f"{self.name}: {redact(str(data.get('result') or 'error'))[:300]}")
        raw_usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        # Anthropic's counts: input_tokens leaves out cache reads and writes.
        read = int(raw_usage.get("cache_read_input_tokens") or 0)
        written = int(raw_usage.get("cache_creation_input_tokens") or 0)
        usage = Usage(
            input_tokens=int(raw_usage.get("input_tokens") or 0) + read + written,
            output_tokens=int(raw_usage.get("output_tokens") or 0),
            cached_input_tokens=read,
            cache_write_tokens=written,
        )
        return str(data.get("result") or ""), usage, float(data.get("total_cost_usd") or 0.0)
