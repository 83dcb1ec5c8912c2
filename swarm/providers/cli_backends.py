"""Headless command-line tools as backends: `codex exec --json` and `claude -p`.

The prompt goes on stdin (never on the command line, where `ps` would show it). A call
that outlives the request's timeout has its whole process group killed, since both tools
start helpers of their own.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from swarm.providers.base import (
    Completion,
    CompletionRequest,
    NoRouteError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
    Usage,
)
from swarm.providers.jsontext import json_from_text
from swarm.redact import redact


def cli_binary(env_var: str, default: str, env: Mapping[str, str] | None = None) -> str | None:
    """Absolute path of the tool named by `env[env_var]` (default `default`), or None."""
    env = os.environ if env is None else env
    return shutil.which(env.get(env_var) or default, path=env.get("PATH"))


def render_prompt(request: CompletionRequest) -> str:
    """The messages as one text, since both tools take a single prompt."""
    parts = []
    for m in request.messages:
        parts.append(f"## {m.role.capitalize()}\n{m.content}")
    if request.json_schema is not None:
        parts.append(
            "## Answer format\nAnswer with one JSON value only, no prose, matching this JSON Schema:\n"
            + json.dumps(request.json_schema)
        )
    return "\n\n".join(parts)


class _CliBackend(abc.ABC):
    name = ""
    binary_env = ""
    default_binary = ""
    vendor_prefixes: tuple[str, ...] = ()

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

    def upstream(self, model: str) -> str:
        for prefix in self.vendor_prefixes:
            if model.startswith(prefix):
                return model[len(prefix) :]
        return model

    @abc.abstractmethod
    def argv(self, request: CompletionRequest, schema_file: str | None) -> list[str]:
        """The tool's command line; the prompt itself goes on stdin."""

    @abc.abstractmethod
    def parse(self, stdout: str) -> tuple[str, Usage, float]:
        """(answer text, usage, cost in USD) from the tool's standard output."""

    async def complete(self, request: CompletionRequest) -> Completion:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="tekton-cli-") as tmp:
            schema_file = None
            if request.json_schema is not None:
                schema_file = os.path.join(tmp, "schema.json")
                with open(schema_file, "w", encoding="utf-8") as fh:
                    json.dump(request.json_schema, fh)
            stdout, stderr, code = await self._run(
                self.argv(request, schema_file), render_prompt(request), request.timeout
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
        return Completion(
            text=text,
            parsed=parsed,
            usage=usage,
            cost_usd=cost,
            latency_s=latency,
            provider=self.name,
            model=request.model,
        )

    async def _run(self, argv: list[str], prompt: str, timeout: float) -> tuple[str, str, int]:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so a kill reaches its helpers
            env=dict(self._env),
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(prompt.encode()), timeout)
        except TimeoutError:
            raise ProviderTimeout(f"{self.name}: no answer within {timeout:g} s (killed)") from None
        finally:
            # Timed out or cancelled (the run was): never leave the tool running.
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), proc.returncode or 0


class CodexCliBackend(_CliBackend):
    """`codex exec --json`: reads JSON-lines events, answers with the last agent message.

    Runs with a read-only sandbox: Tekton applies patches itself, the model only writes one.
    """

    name = "codex-cli"
    binary_env = "TEKTON_CODEX_BIN"
    default_binary = "codex"
    vendor_prefixes = ("openai/", "codex/")

    def argv(self, request: CompletionRequest, schema_file: str | None) -> list[str]:
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

    def parse(self, stdout: str) -> tuple[str, Usage, float]:
        text = ""
        usage = Usage()
        for line in stdout.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # progress lines that are not events
            if not isinstance(event, dict):
                continue
            # Current format: {"type": "item.completed", "item": {"type": "agent_message", "text"}};
            # older releases: {"msg": {"type": "agent_message", "message"}}.
            item = event.get("item") if isinstance(event.get("item"), dict) else None
            msg = event.get("msg") if isinstance(event.get("msg"), dict) else None
            if item and item.get("type") in ("agent_message", "assistant_message"):
                text = str(item.get("text") or text)
            elif msg and msg.get("type") == "agent_message":
                text = str(msg.get("message") or text)
            raw_usage = event.get("usage") if event.get("type") == "turn.completed" else None
            if isinstance(raw_usage, dict):
                usage = Usage(
                    input_tokens=int(raw_usage.get("input_tokens") or 0),
                    output_tokens=int(raw_usage.get("output_tokens") or 0),
                )
        return text, usage, 0.0


class ClaudeCliBackend(_CliBackend):
    """`claude -p --output-format json`: one JSON object with the result, usage and cost."""

    name = "claude-cli"
    binary_env = "TEKTON_CLAUDE_BIN"
    default_binary = "claude"
    vendor_prefixes = ("claude-cli/", "anthropic/")

    def argv(self, request: CompletionRequest, schema_file: str | None) -> list[str]:
        return [
            self.binary,
            "-p",
            "--output-format",
            "json",
            "--model",
            self.upstream(request.model),
        ]

    def parse(self, stdout: str) -> tuple[str, Usage, float]:
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
        usage = Usage(
            input_tokens=int(raw_usage.get("input_tokens") or 0),
            output_tokens=int(raw_usage.get("output_tokens") or 0),
        )
        return str(data.get("result") or ""), usage, float(data.get("total_cost_usd") or 0.0)
