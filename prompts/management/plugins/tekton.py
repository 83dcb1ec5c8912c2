"""`tekton ask claude|codex|agno|diamond`, `tekton prompt` and `tekton memory show|search|
prune`: the single-prompt front door, added to the tekton command group as a django-typer
plugin (issue 12).

Every invocation is journaled under the memory directory (--memory, default
<TEKTON_MEMORY_DIR>/<login>) and is a row in the database; the recent journal goes along
as context unless --no-memory. The answer streams to stdout as it arrives; what was
tried and why the chain moved on goes to stderr. Exit: 0 answered (or a dry run / an
explain), 1 failed, 2 usage error (one line, nothing written).

Start-up: this module imports typer and the tekton command only; the provider layer, the
services and the journal come in inside each subcommand.
"""

# No `from __future__ import annotations`: see runs/management/commands/tekton.py.

import getpass
from pathlib import Path
from typing import Annotated, Any

import typer

# typer vendors its own click; its usage errors are these classes, not the click package's.
from typer._click.exceptions import UsageError

from runs.management.commands.tekton import EXIT_FAILED, EXIT_OK, Command, DebugOpt

MemoryOpt = Annotated[
    Path | None,
    typer.Option(
        "--memory", help="The memory directory (default: one per login under TEKTON_MEMORY_DIR)."
    ),
]
ContextOpt = Annotated[
    Path | None,
    typer.Option("--context", help="A text file sent along with the prompt."),
]
NoMemoryOpt = Annotated[
    bool, typer.Option("--no-memory", help="Do not offer the recent journal as context.")
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="A model id (vendor/model).")]


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""


def _journal(memory: Path | None):
    from prompts.execution import memory_dir_default
    from swarm.frontdoor.journal import Journal
    from tekton_site.paths import path_typed

    if memory is None:
        return Journal(memory_dir_default())
    # A typed folder the filesystem cannot take is a FieldError (exit 2), not an OSError
    # from the journal's first read.
    return Journal(path_typed(memory, field="memory", what="memory folder"))


class _Terminal:
    """Streams answer pieces to stdout; a restart (a retry, a tool's second message) is
    said on stderr and the new text follows."""

    def __init__(self, command: Command) -> None:
        self.command = command
        self.streamed = False
        self.at_line_start = True

    def __call__(self, delta) -> None:
        out = self.command.stdout
        if delta.restart:
            if self.streamed:
                if not self.at_line_start:
                    out.write("\n", ending="")
                self.command._err("[the answer starts again]")
            self.at_line_start = True
            return
        if delta.text:
            out.write(delta.text, ending="")
            out.flush()
            self.streamed = True
            self.at_line_start = delta.text.endswith("\n")

    def break_line(self) -> None:
        """End a streamed line before a progress line (agno's next step) goes to stderr."""
        if self.streamed and not self.at_line_start:
            self.command.stdout.write("\n", ending="")
            self.command.stdout.flush()
            self.at_line_start = True

    def say(self, line: str) -> None:
        self.break_line()
        self.command._err(line)

    def finish(self, answer: str) -> None:
        if not self.streamed:
            if answer:
                self.command._out(answer.rstrip("\n"))
        elif not self.at_line_start:
            self.command._out("")


def _ask(
    self: Command,
    kind: str,
    text: str,
    *,
    model: str | None = None,
    temperature: float | None = None,
    intent: str | None = None,
    dry_run: bool = False,
    memory: Path | None,
    context: Path | None,
    no_memory: bool,
    debug: bool,
    record: Path | None = None,
) -> None:
    from prompts.execution import invocation_run, router_for, spec_build
    from prompts.services import prompt_invocation_create
    from swarm.frontdoor.invoke import UsageProblem, context_read, invoke_plan
    from swarm.frontdoor.journal import JournalError

    memory, context, no_memory = _defaults(self, memory, context, no_memory)
    with self._errors(debug):
        try:
            record_path = None
            if record is not None:
                from tekton_site.errors import FieldError
                from tekton_site.paths import record_path_check

                try:
                    record_path = str(record_path_check(record))
                except FieldError as exc:
                    raise UsageProblem(exc.message) from None
            context_text = context_read(context) if context is not None else ""
            journal = _journal(memory)
            spec = spec_build(
                kind=kind,
                text=text,
                context=context_text,
                model=model,
                temperature=temperature,
                intent=intent,
                dry_run=dry_run,
                memory="" if no_memory else journal.recent_context(),
            )
            router = router_for(kind, record_path=record_path)
            plan = invoke_plan(spec, completer=router)
            journal.check_writable()  # last: a refused request makes no directory
        except (UsageProblem, JournalError) as exc:
            raise UsageError(str(exc)) from None
        invocation = prompt_invocation_create(
            agent=kind,
            prompt=text,
            who=_login(),
            context=context_text,
            requested_model=model,
            temperature=temperature,
            intent=plan.intent,
            chain=plan.chain,
            repo_path=str(Path.cwd()),
        )
        terminal = _Terminal(self)
        try:
            outcome = invocation_run(
                spec=spec,
                completer=router,
                journal=journal,
                invocation=invocation,
                say=terminal.say,
                on_delta=terminal,
                git_path=str(Path.cwd()),
            )
        except KeyboardInterrupt:
            # As `run` in embedded mode: the work dies with this process, so it failed.
            where = Path(journal.root) / "invocations" / (invocation.journal_id or "")
            self._err("")
            self._err(f"interrupted: journaled FAILED in {where}")
            raise typer.Exit(EXIT_FAILED) from None
        terminal.finish(outcome.response)
        if outcome.is_offline:
            why = (
                "TEKTON_LLM_BACKEND=offline"
                if router.mode == "offline"
                else "no API key is set; set ANTHROPIC_API_KEY or OPENAI_API_KEY for a model's answer"
            )
            self._err(f"(answered by the offline backend: {why})")
        where = Path(journal.root) / "invocations" / outcome.journal_id
        if outcome.outcome == "FAILED":
            self._err(f"error: {outcome.error}")
            self._err(f"journaled FAILED in {where}")
            raise typer.Exit(EXIT_FAILED)
        self._err(
            f"[{outcome.model or 'dry run'} · {outcome.tokens_in} in / {outcome.tokens_out} out"
            f" · ${outcome.cost_usd:.4f} · journal {where}]"
        )
        raise typer.Exit(EXIT_OK)


RecordOpt = Annotated[
    Path | None, typer.Option("--record", help="Record every LLM call to this cassette.")
]


@Command.group(help="Ask one agent: claude (the API), codex (its command line), agno, diamond.")
def ask(
    self,
    memory: MemoryOpt = None,
    context: ContextOpt = None,
    no_memory: NoMemoryOpt = False,
) -> None:
    # Given before the agent (`tekton ask --memory DIR claude ...`): every agent's default.
    self._ask_defaults = {"memory": memory, "context": context, "no_memory": no_memory}


def _defaults(self: Command, memory, context, no_memory):
    given = getattr(self, "_ask_defaults", {})
    return (
        memory if memory is not None else given.get("memory"),
        context if context is not None else given.get("context"),
        no_memory or bool(given.get("no_memory")),
    )


@ask.command(
    name="claude", help="Ask Claude through the router (offline, and labelled so, without a key)."
)
def ask_claude(
    self,
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    model: ModelOpt = None,
    temperature: Annotated[
        float | None, typer.Option("--temperature", help="0 to 2 (default 0.2).")
    ] = None,
    memory: MemoryOpt = None,
    context: ContextOpt = None,
    no_memory: NoMemoryOpt = False,
    record: RecordOpt = None,
    debug: DebugOpt = False,
) -> None:
    _ask(
        self,
        "claude",
        prompt,
        model=model,
        temperature=temperature,
        record=record,
        memory=memory,
        context=context,
        no_memory=no_memory,
        debug=debug,
    )


@ask.command(
    name="codex",
    help="Run the Codex command line on PROMPT (a timeout, an empty working directory, a "
    "scrubbed environment); its stdout and stderr are journaled.",
)
def ask_codex(
    self,
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    model: ModelOpt = None,
    memory: MemoryOpt = None,
    context: ContextOpt = None,
    no_memory: NoMemoryOpt = False,
    debug: DebugOpt = False,
) -> None:
    _ask(
        self,
        "codex",
        prompt,
        model=model,
        memory=memory,
        context=context,
        no_memory=no_memory,
        debug=debug,
    )


@ask.command(
    name="agno", help="A planner -> coder -> reviewer chain, each step seeing the previous answers."
)
def ask_agno(
    self,
    task: Annotated[str, typer.Argument(help="The task.")],
    model: ModelOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the chain; call nothing.")
    ] = False,
    memory: MemoryOpt = None,
    context: ContextOpt = None,
    no_memory: NoMemoryOpt = False,
    record: RecordOpt = None,
    debug: DebugOpt = False,
) -> None:
    _ask(
        self,
        "agno",
        task,
        model=model,
        record=record,
        dry_run=dry_run,
        memory=memory,
        context=context,
        no_memory=no_memory,
        debug=debug,
    )


@ask.command(name="diamond", help="The staged Diamond run on GOAL (as `tekton run`), journaled.")
def ask_diamond(
    self,
    goal: Annotated[str, typer.Argument(help="What the run should achieve.")],
    repo: Annotated[
        Path | None, typer.Option("--repo", help="Target git repository (default: here).")
    ] = None,
    stage_from: Annotated[str, typer.Option("--from", help="First stage.")] = "plan",
    stage_to: Annotated[str, typer.Option("--to", help="Last stage.")] = "release",
    model: ModelOpt = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Model profile.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Also write every artifact here.")
    ] = None,
    memory: MemoryOpt = None,
    context: ContextOpt = None,
    no_memory: NoMemoryOpt = False,
    debug: DebugOpt = False,
) -> None:
    from prompts.services import prompt_invocation_create, prompt_invocation_diamond
    from runs.selectors import run_first_after, run_last_id
    from swarm.frontdoor.invoke import UsageProblem, context_read
    from swarm.frontdoor.journal import DRY_RUN, FAILED, OK, JournalError, git_facts

    memory, context, no_memory = _defaults(self, memory, context, no_memory)
    with self._errors(debug):
        try:
            if not goal.strip():
                raise UsageProblem("the goal is empty")
            context_text = context_read(context) if context is not None else ""
            journal = _journal(memory)
            journal.check_writable()
        except (UsageProblem, JournalError) as exc:
            raise UsageError(str(exc)) from None
        # The run's goal carries the --context text: the stages read the goal.
        full_goal = f"{goal}\n\nContext:\n{context_text}" if context_text else goal
        before = run_last_id()
        target = str(repo if repo is not None else Path.cwd())
        invocation = prompt_invocation_create(
            agent="diamond",
            prompt=goal,
            who=_login(),
            context=context_text,
            requested_model=model,
            repo_path=target,
        )
        code = EXIT_FAILED
        with journal.invocation(
            agent="diamond",
            command="ask diamond",
            prompt=goal,
            context=context_text,
            invocation=invocation.pk,
            **git_facts(target),
        ) as inv:
            invocation.journal_id = inv.id
            try:
                self.run(
                    goal=full_goal,
                    stage_from=stage_from,
                    stage_to=stage_to,
                    output=output,
                    consensus_free=None,
                    model=model,
                    resume=None,
                    explain=False,
                    debug=debug,
                    repo=repo,
                    profile=profile,
                    record=None,
                    detach=False,
                    test_command=None,
                )
            except typer.Exit as done:
                code = done.exit_code
            except BaseException as exc:
                from prompts.services import prompt_invocation_fail

                prompt_invocation_fail(invocation=invocation, error=str(exc) or "interrupted")
                raise
            run = run_first_after(before)
            state = OK if code == EXIT_OK else FAILED
            summary = (
                f"run {run.pk} {run.status}" + (f": {run.reason}" if run.reason else "")
                if run
                else "no run was created"
            )
            inv.finish(
                state,
                response=summary,
                run=run.pk if run else None,
                exit_code=code,
                tokens_in=run.input_tokens if run else 0,
                tokens_out=run.output_tokens if run else 0,
                cost_usd=float(run.cost_usd) if run else 0.0,
            )
            prompt_invocation_diamond(
                invocation=invocation,
                run=run,
                outcome=state if state != DRY_RUN else OK,
                response=summary,
                error="" if state == OK else summary,
            )
        raise typer.Exit(code)


@Command.command(
    name="prompt",
    help="Ask along the model chain of the prompt's intent (code, design, analyze, search, "
    "deep, fast, general), falling back on provider failures.",
)
def prompt_command(
    self,
    text: Annotated[str, typer.Argument(help="What to ask.")],
    intent: Annotated[
        str | None, typer.Option("--intent", help="Use this intent instead of the rules.")
    ] = None,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="Show the intent and the chain; call and write nothing."),
    ] = False,
    model: ModelOpt = None,
    temperature: Annotated[float | None, typer.Option("--temperature")] = None,
    memory: MemoryOpt = None,
    context: ContextOpt = None,
    no_memory: NoMemoryOpt = False,
    record: RecordOpt = None,
    debug: DebugOpt = False,
) -> None:
    if explain:
        _explain(self, text, intent=intent, model=model, debug=debug)
    _ask(
        self,
        "prompt",
        text,
        model=model,
        record=record,
        temperature=temperature,
        intent=intent,
        memory=memory,
        context=context,
        no_memory=no_memory,
        debug=debug,
    )


def _explain(self: Command, text: str, *, intent: str | None, model: str | None, debug: bool):
    from prompts.execution import router_for, spec_build
    from swarm.frontdoor.invoke import UsageProblem, invoke_plan

    with self._errors(debug):
        try:
            spec = spec_build(kind="prompt", text=text, intent=intent, model=model)
            router = router_for("prompt")
            plan = invoke_plan(spec, completer=router)
        except UsageProblem as exc:
            raise UsageError(str(exc)) from None
        self._out(f"intent: {plan.intent} ({plan.intent_reason})")
        self._out("chain (tried in order; the next one after a failure, never after a 400/401):")
        for i, m in enumerate(plan.chain, start=1):
            self._out(f"  {i}. {router.describe(m)}")
        raise typer.Exit(EXIT_OK)


# --- memory ---------------------------------------------------------------------------------
def _entry_lines(entry: dict[str, Any]) -> list[str]:
    from swarm.frontdoor.journal import _preview

    facts = [entry.get("command", ""), entry.get("outcome", "")]
    if entry.get("model"):
        facts.append(str(entry["model"]))
    if entry.get("tokens_in") is not None:
        facts.append(f"{entry.get('tokens_in', 0)}/{entry.get('tokens_out', 0)} tokens")
    if entry.get("cost_usd") is not None:
        facts.append(f"${float(entry['cost_usd']):.4f}")
    lines = [f"{Path(entry['folder']).name}  " + "  ".join(f for f in facts if f)]
    lines.append(f"  prompt: {_preview(entry['prompt'])}")
    if entry.get("response"):
        lines.append(f"  answer: {_preview(entry['response'])}")
    elif entry.get("error"):
        lines.append(f"  error: {_preview(entry['error'])}")
    return lines


@Command.group(help="The memory journal: show, search, prune.")
def memory(self) -> None:
    pass


@memory.command(name="show", help="The last N invocations, newest first.")
def memory_show(
    self,
    count: Annotated[int, typer.Argument(min=1, help="How many.")] = 5,
    memory_dir: MemoryOpt = None,
    debug: DebugOpt = False,
) -> None:
    with self._errors(debug):
        journal = _journal(memory_dir)
        entries = journal.entries()[:count]
        if not entries:
            self._out(f"nothing journaled in {journal.root}")
            return
        for entry in entries:
            for line in _entry_lines(entry):
                self._out(line)


@memory.command(name="search", help="Invocations whose prompt, answer or model contain TEXT.")
def memory_search(
    self,
    text: Annotated[str, typer.Argument(help="Text to find (any case).")],
    memory_dir: MemoryOpt = None,
    debug: DebugOpt = False,
) -> None:
    with self._errors(debug):
        if not text.strip():
            raise UsageError("give some text to search for")
        found = _journal(memory_dir).search(text)
        if not found:
            self._out(f"no invocation mentions {text!r}")
            raise typer.Exit(EXIT_FAILED)
        for entry in found:
            for line in _entry_lines(entry):
                self._out(line)


@memory.command(name="prune", help="Remove the invocations older than a duration (14d, 12h, 2w).")
def memory_prune(
    self,
    older_than: Annotated[str, typer.Option("--older-than", help="Like 14d, 12h, 30m, 2w.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")
    ] = False,
    memory_dir: MemoryOpt = None,
    debug: DebugOpt = False,
) -> None:
    """The journal's folders, and the database rows of those invocations: yours (asked
    from this login, or by the user of that name), anyone's when that user is staff."""
    from prompts.services import prompt_invocations_prune
    from swarm.frontdoor.journal import duration_parse

    with self._errors(debug):
        try:
            age = duration_parse(older_than)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        journal = _journal(memory_dir)
        removed = journal.prune(older_than=age, dry_run=dry_run)
        rows = prompt_invocations_prune(journal_ids=removed, login=_login(), dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        self._out(
            f"{verb} {len(removed)} invocation(s) older than {older_than} from {journal.root}"
            f" and {rows} database row(s)"
        )
