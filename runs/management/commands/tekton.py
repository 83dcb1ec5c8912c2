"""`manage.py tekton`: launch, follow and steer Diamond v5 runs from a terminal.

Thin adapter: parse, one service (or selector) call, render (runs/cli_render.py). Where
the stages run (this process, a detached one) is runs/cli_process.py. Other apps add
their subcommands as django-typer plugins (`token` and `user-ensure` from
accounts/management/plugins/tekton.py, `check` from syschecks/management/plugins/tekton.py),
so this stays one command group.

Exit codes: 0 the run's last stage succeeded (or the command did what it was asked);
1 the run failed or was cancelled, or an unexpected error; 2 a usage error (bad flag or
value, unknown run, an action the run's state does not allow); 3 the run is blocked and
waits for a person (the message names `approve`, `retry` and `abort`).

Following a run: without --detach the command follows the run through the event hub
(runs/cli_stream.py EventFollower over runs/event_hub.py), the stream the dashboard and
the TUI get: stored events from the database in seq order with no gap, woken by the
channel layer's messages (Redis in services mode; this process's own layer in embedded
mode, where this process also runs the stages, in a background thread). It shows them
as a live Progress display on a terminal and as one plain line per event otherwise.
Ctrl-C while following: in inline mode the run would die with this process, so it is
cancelled (exit 1); in celery mode the workers go on with it and the command only stops
following (exit 130).

`follow RUN_ID` does the same for a run that is already under way (or done: it shows
its events and ends with the same exit code). In embedded mode another process runs the
stages and its in-memory layer is out of reach, so `follow` reads new events by seq
every 0.2 s and shows no streamed text. Ctrl-C stops following and leaves the run alone.

`run --deltas` and `follow --deltas` also print the agents' text as it streams, where
the layer carries it (the deltas' text is in the message). A plain line per event
replaces the progress bars then, so the running text has the terminal to itself.

`tui [RUN_ID]` opens the terminal UI (tui.main.tui_run) on the run list, or on one run.

`--consensus-free` is repeatable (`--consensus-free code --consensus-free test_debug`)
and also takes a comma-separated list (`--consensus-free code,test_debug`); click does
not let an option swallow several space-separated values.

Start-up: the services, and with them the engine, Celery and the artifact schemas, are
imported only inside the subcommands that call them; the subcommands that only read skip
Django's system checks, which would import the URL configuration and with it DRF and
drf-spectacular. tests/runs/test_cli_imports.py keeps it that way.
"""

# No `from __future__ import annotations` here or in the plugins: typer reads every
# subcommand's annotations twice whenever a tekton command starts, and as strings each is
# compiled and evaluated again (about 10 ms of every start). tests/runs/test_cli_typer.py.

import gc
import json
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from django.core.management.base import CommandError
from django_typer.management import TyperCommand, command, group

# typer vendors its own click; its usage errors are these classes, not the click package's.
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from runs import cli_process
from runs.cli_render import (
    FollowView,
    budget_line,
    console_for,
    explain_renderable,
    run_detail_data,
    run_detail_renderable,
    runs_table,
    unblock_hint,
)
from runs.models import Run
from runs.selectors import (
    run_blocked_at,
    run_detail,
    run_evidence_summary,
    run_get,
    run_last_seq,
    run_status,
    runs_with_progress,
)
from swarm.redact import redact
from swarm.stages import UnknownStageError
from tekton_site.errors import FieldError, ServiceUnavailable, StateError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BLOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
MANAGE = "manage.py"

DebugOpt = Annotated[bool, typer.Option("--debug", help="Print the full traceback on errors.")]
DetachOpt = Annotated[
    bool,
    typer.Option(
        "--detach", help="Print the run id and return; the run goes on without this command."
    ),
]

# Subcommand paths that only read: Django's system checks are skipped for them, as
# `requires_system_checks = []` does for a whole command. `run --explain` is one too.
READ_ONLY = {
    ("runs",),
    ("show",),
    ("follow",),
    ("check",),
    ("search",),
    ("token", "list"),
    ("memory", "show"),
    ("memory", "search"),
}
_GROUPS = ("token", "memory")  # read-only entries of these are two words
# The command's own options that take a value (the rest are flags).
_VALUE_OPTIONS = {"--settings", "--pythonpath"}


def reads_only(args: Sequence[str]) -> bool:
    """Whether `manage.py tekton ARGS` only reads: READ_ONLY, `run --explain` (which
    `--resume` overrides: a resume runs) or `prompt --explain`."""
    words: list[str] = []
    rest = list(args)
    while rest and len(words) < 2:
        arg = rest.pop(0)
        if arg in _VALUE_OPTIONS:
            rest = rest[1:]
        elif not arg.startswith("-"):
            words.append(arg)
            if words == ["run"]:
                return "--explain" in rest and "--resume" not in rest
            if words == ["prompt"]:
                return "--explain" in rest
            if words[0] not in _GROUPS:
                break
    return tuple(words) in READ_ONLY


def _user_errors() -> tuple[type[BaseException], ...]:
    return (FieldError, StateError, UnknownStageError, Run.DoesNotExist)


class Command(TyperCommand):
    help = "Launch, follow and steer Diamond v5 runs (exit: 0 ok, 1 failed, 2 usage, 3 blocked)."

    # django-typer ends a command-line usage error with status 1 after the whole help
    # text; the convention (and our contract) is one line and status 2.
    def __exit__(self, exc_type, exc_val, exc_tb):
        if isinstance(exc_val, UsageError) and not isinstance(exc_val, NoArgsIsHelpError):
            super().__exit__(None, None, None)  # pops the command stack
            message = f"error: {exc_val.format_message()} (see --help)"
            if getattr(self, "_called_from_command_line", False):
                self.stderr.write(message)
                sys.exit(EXIT_USAGE)
            raise CommandError(message, returncode=EXIT_USAGE) from exc_val
        return super().__exit__(exc_type, exc_val, exc_tb)

    def run_from_argv(self, argv):
        self._reads_only = reads_only(argv[2:])
        return super().run_from_argv(argv)

    def execute(self, *args, **options):
        # manage.py paused the cyclic collector for start-up (tekton_site/startup.py); the
        # subcommand's work (a run followed for an hour) collects as usual.
        gc.enable()
        # call_command skips the checks already; this covers the command line.
        if getattr(self, "_reads_only", False):
            options["skip_checks"] = True
        return super().execute(*args, **options)

    # --- plumbing ---------------------------------------------------------------------

    def _console(self):
        return console_for(self.stdout._out)

    def _out(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def _write(self, text: str) -> None:
        """Text without a line end of its own (streamed words)."""
        self.stdout.write(text, ending="")
        self.stdout.flush()

    def _err(self, text: str) -> None:
        self.stderr.write(redact(text))
        self.stderr.flush()

    @contextmanager
    def _errors(self, debug: bool) -> Iterator[None]:
        """Turn what can go wrong into one line on stderr and an exit code; what the
        stages log reaches the terminal as one line each (cli_process.cli_logging)."""
        cli_process.cli_logging(debug)
        try:
            yield
        except (typer.Exit, UsageError, KeyboardInterrupt):
            raise
        except _user_errors() as err:
            if debug:
                self._err(traceback.format_exc())
            if isinstance(err, Run.DoesNotExist):
                self._err(f"error: {err or 'no such run'}")
            else:
                self._err(f"error: {err}")
            raise typer.Exit(EXIT_USAGE) from None
        except ServiceUnavailable as err:
            # A service that is down is no bug: its one line is the whole story.
            if debug:
                self._err(traceback.format_exc())
            self._err(f"error: {err}")
            raise typer.Exit(EXIT_FAILED) from None
        except Exception as err:
            message = " ".join(str(err).split()) or type(err).__name__
            if debug:
                self._err(traceback.format_exc())
                self._err(f"error: {message}")
            else:
                self._err(f"error: {message} (rerun with --debug for the traceback)")
            raise typer.Exit(EXIT_FAILED) from None

    def _run_get(self, run_id: int) -> Run:
        try:
            return run_get(run_id)
        except Run.DoesNotExist:
            raise Run.DoesNotExist(f"no run with id {run_id}") from None

    # --- following ----------------------------------------------------------------------

    def _follow(self, run_id: int, *, follower: Any, worker: cli_process.Worker | None) -> int:
        """Show the run's events from `follower` (a started cli_stream.EventFollower)
        until the run ends, blocks or (inline) the worker stops; return the exit code for
        where the run got to. A follower with deltas adds the agents' streamed text
        between the events, as plain lines."""
        from runs.cli_stream import END, POLL_SECONDS, DeltaPrinter

        view = FollowView.for_run(run_detail(run_id))
        console = self._console()
        live = console.is_terminal and not follower.deltas
        progress = view.progress_start(console) if live else None
        printer = DeltaPrinter(self._write) if follower.deltas else None
        seen = follower.after_seq
        ended = False
        if progress is not None:
            progress.start()
        try:
            while not (ended or view.final_kind):
                items = follower.get(timeout=POLL_SECONDS)
                for item in items:
                    if item is END:
                        ended = True
                    elif isinstance(item, dict):  # a delta
                        if printer is not None:
                            printer.delta(item["stage"], item["payload"])
                    else:
                        if printer is not None:
                            printer.line_end()
                        seen = item.seq
                        line = view.apply(item)
                        if not live:
                            self._out(line)
                if items or ended or view.final_kind:
                    continue
                # Nothing new: has the run stopped where no final event comes (blocked, or
                # nothing here can move it on), with every event it recorded shown?
                if worker is not None and worker.is_alive():
                    continue
                status = run_status(run_id)
                if status is None:  # deleted meanwhile: _outcome says so
                    break
                stopped = status == Run.Status.BLOCKED or status in Run.FINISHED
                if (worker is not None or stopped) and seen >= run_last_seq(run_id):
                    break
        finally:
            if progress is not None:
                progress.stop()
            follower.stop()
            if printer is not None:
                printer.line_end()
        if worker is not None:
            worker.join()
            if worker.error is not None:
                raise worker.error
        if ended and not view.final_kind and follower.error:
            self._err(f"error: following run {run_id} stopped: {follower.error}")
            return EXIT_FAILED
        return self._outcome(run_id)

    def _outcome(self, run_id: int) -> int:
        run = run_get(run_id)
        if run.is_finished or run.status == Run.Status.BLOCKED:
            self._export(run)
        if run.status == Run.Status.SUCCEEDED:
            from runs.artifacts_store import artifact_dir

            where = run.output_dir or str(artifact_dir(run))
            self._out(f"run {run.pk} succeeded; artifacts in {redact(where)}")
            return EXIT_OK
        if run.status == Run.Status.BLOCKED:
            stage, reason = run_blocked_at(run)
            if reason:
                self._err(f"blocked: {' '.join(reason.split())}")
            budget = reason.startswith("budget reached") or reason.startswith("no price for")
            self._err(unblock_hint(run.pk, stage, MANAGE, budget=budget))
            return EXIT_BLOCKED
        if run.status in (Run.Status.FAILED, Run.Status.CANCELLED):
            self._err(f"run {run.pk} {run.status}" + (f": {run.reason}" if run.reason else ""))
            return EXIT_FAILED
        self._err(
            f"run {run.pk} is {run.status} and nothing here can move it on; "
            f"see `{MANAGE} tekton show {run.pk}`"
        )
        return EXIT_FAILED

    def _export(self, run: Run) -> None:
        """Workers write no folder on this machine: fetch what the run wrote into --output
        (a no-op rewrite in embedded mode, where the files are already there)."""
        if not run.output_dir:
            return
        from runs.artifacts_store import FolderTaken, artifacts_export

        try:
            artifacts_export(run=run, folder=run.output_dir)
        except (FolderTaken, OSError) as exc:
            self._err(f"warning: artifacts not copied to {redact(run.output_dir)}: {exc}")

    def _go(
        self,
        run: Run,
        *,
        after_seq: int,
        detach: bool,
        start: Callable[[], None] | None,
        deltas: bool = False,
        dispatch: Callable[[], None] | None = None,
    ) -> None:
        """After a service queued work on `run`: follow it (running it here in inline mode)
        or, with detach, hand it to a detached process and return. Ends with typer.Exit."""
        if detach:
            if cli_process.is_inline():
                cli_process.spawn_execute(run.pk)
            self._out(str(run.pk))
            raise typer.Exit(EXIT_OK)
        from runs.cli_stream import EventFollower

        # Subscribed before the stages start (or are dispatched), so the first words are
        # not missed; the stored events come by seq whenever it joins.
        follower = EventFollower(run.pk, after_seq, deltas=deltas).start()
        worker = None
        try:
            if dispatch is not None:
                dispatch()
            if cli_process.is_inline():
                worker = cli_process.Worker(start or (lambda: cli_process.drive(run.pk)))
                worker.start()
            code = self._follow(run.pk, follower=follower, worker=worker)
        except KeyboardInterrupt:
            code = self._interrupted(run.pk, worker)
        finally:
            follower.stop()
        raise typer.Exit(code)

    def _interrupted(self, run_id: int, worker: cli_process.Worker | None) -> int:
        if worker is None:
            self._err(
                f"stopped following; run {run_id} goes on in the workers "
                f"(`{MANAGE} tekton show {run_id}`, `{MANAGE} tekton cancel {run_id}`)"
            )
            return EXIT_INTERRUPTED
        from runs.services import run_cancel

        try:
            run_cancel(run=run_get(run_id))
            self._err(
                f"interrupted: run {run_id} cancelled (resume it with `{MANAGE} tekton run --resume {run_id}`)"
            )
        except StateError as err:
            self._err(f"interrupted: {err}")
        worker.join(timeout=15)
        return EXIT_FAILED

    def _detached(self, run_id: int, action: str, stage: str, note: str) -> None:
        """Hand approve/retry/resume to a detached process; exit with what it reported:
        0 (the run id printed), 2 (it refused the action) or 1 (it stopped early)."""
        first = cli_process.detached_action(run_id, action, stage, note)
        if first == cli_process.HANDSHAKE_OK:
            self._out(str(run_id))
            raise typer.Exit(EXIT_OK)
        if first.startswith(cli_process.HANDSHAKE_ERROR):
            self._err(first)
            raise typer.Exit(EXIT_USAGE)
        self._err(
            "error: the background process stopped early; "
            f"see {cli_process.log_path(run_id, action)}"
        )
        raise typer.Exit(EXIT_FAILED)

    def _action(
        self,
        run_id: int,
        *,
        detach: bool,
        action: str,
        call: Callable[[Run], Run],
        stage: str = "",
        note: str = "",
        deltas: bool = False,
    ) -> None:
        """approve / retry / resume: one service call, then follow (or detach)."""
        run = self._run_get(run_id)
        if detach and cli_process.is_inline():
            self._detached(run.pk, action, stage, note)
        after = run.event_seq
        run = call(run)
        self._go(run, after_seq=after, detach=detach, start=None, deltas=deltas)

    # --- subcommands ---------------------------------------------------------------------

    @command(help="Start a run (or --resume one), follow it live and exit 0/1/2/3.")
    def run(
        self,
        goal: Annotated[
            str | None, typer.Option("--goal", help="What the run should achieve (required).")
        ] = None,
        stage_from: Annotated[str, typer.Option("--from", help="First stage.")] = "plan",
        stage_to: Annotated[str, typer.Option("--to", help="Last stage.")] = "release",
        output: Annotated[
            Path | None,
            typer.Option(
                "--output", help="Also write every artifact and diamond_summary.json here."
            ),
        ] = None,
        consensus_free: Annotated[
            list[str] | None,
            typer.Option(
                "--consensus-free",
                help="Stage decided by executable checks, not the debate. Repeat, or comma-separate.",
            ),
        ] = None,
        model: Annotated[
            str | None, typer.Option("--model", help="One vendor/model id for every agent.")
        ] = None,
        resume: Annotated[
            int | None,
            typer.Option("--resume", help="Continue run RUN_ID from its first unfinished stage."),
        ] = None,
        explain: Annotated[
            bool,
            typer.Option(
                "--explain", help="Print the plan (stages, roles, models, consensus); run nothing."
            ),
        ] = False,
        debug: DebugOpt = False,
        repo: Annotated[
            Path | None, typer.Option("--repo", help="Target git repository (default: here).")
        ] = None,
        profile: Annotated[
            str | None, typer.Option("--profile", help="Model profile (default diamond-v5).")
        ] = None,
        record: Annotated[
            Path | None, typer.Option("--record", help="Record every LLM call to this cassette.")
        ] = None,
        detach: DetachOpt = False,
        test_command: Annotated[
            str | None,
            typer.Option(
                "--test-command",
                help="The repository's test command for this run, instead of .tekton.toml's "
                "or the detected one (a shell line, run in the sandbox).",
            ),
        ] = None,
        deltas: Annotated[
            bool,
            typer.Option(
                "--deltas",
                help="Also print the agents' text as it streams (plain lines replace the "
                "progress bars).",
            ),
        ] = False,
    ) -> None:
        from runs import services

        with self._errors(debug):
            if resume is not None:
                self._action(
                    resume,
                    detach=detach,
                    action="resume",
                    call=lambda r: services.run_resume(run=r),
                    deltas=deltas,
                )
            if goal is None:
                raise UsageError("Missing option '--goal' (or give --resume RUN_ID).")
            free = [
                s.strip() for item in consensus_free or [] for s in item.split(",") if s.strip()
            ]
            kwargs: dict[str, Any] = {
                "goal": goal,
                "repo_path": str(repo if repo is not None else Path.cwd()),
                "profile_name": profile,
                "stage_from": stage_from,
                "stage_to": stage_to,
                "consensus_free": free or None,
                "model": model,
                "record_path": str(record) if record else None,
                "test_command": test_command,
            }
            if explain:
                plan = services.run_plan(**kwargs)
                self._console().print(
                    explain_renderable(plan.explain(), goal=plan.goal, repo_path=plan.repo_path)
                )
                raise typer.Exit(EXIT_OK)
            # Following the words of workers elsewhere: listen first, then let them start.
            later = deltas and not detach and not cli_process.is_inline()
            run = services.run_create(
                **kwargs,
                output_dir=str(output) if output else None,
                dispatch=not cli_process.is_inline() and not later,
            )
            if not detach:
                self._out(f"run {run.pk} created ({len(run.config.get('stages', []))} stages)")
            self._go(
                run,
                after_seq=0,
                detach=detach,
                start=None,
                deltas=deltas,
                dispatch=(lambda: services.run_dispatch(run=run)) if later else None,
            )

    @command(
        help="Fork a run from a stage: a new run on its base commit that reuses its finished "
        "stages before STAGE and runs from there (with another --model or --profile), "
        "followed live like `run`."
    )
    def fork(
        self,
        run_id: Annotated[int, typer.Argument(help="The run to fork (the parent).")],
        from_stage: Annotated[
            str,
            typer.Option("--from", help="The stage to run from; the stages before it are reused."),
        ],
        model: Annotated[
            str | None,
            typer.Option("--model", help="One vendor/model id for every agent of the fork."),
        ] = None,
        profile: Annotated[
            str | None, typer.Option("--profile", help="Model profile (default: the parent's).")
        ] = None,
        detach: DetachOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        from runs import services

        with self._errors(debug):
            parent = self._run_get(run_id)
            run = services.run_fork(
                parent=parent,
                from_stage=from_stage,
                profile_name=profile,
                model=model,
                dispatch=not cli_process.is_inline(),
            )
            if not detach:
                left = run.stages.exclude(status="skipped").count()
                self._out(
                    f"run {run.pk} forked from run {parent.pk} at {from_stage} "
                    f"({run.stages.count() - left} stage(s) reused, {left} to run)"
                )
            self._go(run, after_seq=0, detach=detach, start=None)

    @command(
        help="Follow a run already under way: its events live (the progress display on a "
        "terminal) until it finishes (exit 0/1) or blocks (exit 3, with what to approve). "
        "Services mode: the Redis event stream the dashboard and the TUI follow. Embedded "
        "mode: the stages run in another process, whose in-process stream this one cannot "
        "reach, so new events are read from the database by seq (every 0.2 s) and "
        "--deltas has nothing to show. Ctrl-C stops following; the run goes on."
    )
    def follow(
        self,
        run_id: Annotated[int, typer.Argument(help="Run id.")],
        deltas: Annotated[
            bool,
            typer.Option(
                "--deltas",
                help="Also print the agents' text as it streams (services mode; plain lines "
                "replace the progress bars).",
            ),
        ] = False,
        debug: DebugOpt = False,
    ) -> None:
        from runs.cli_stream import POLL_SECONDS, EventFollower

        with self._errors(debug):
            run = self._run_get(run_id)
            if deltas and cli_process.is_inline():
                self._err(
                    "note: embedded mode: the agents' streamed text reaches only the process "
                    "that runs the stages; following the stored events"
                )
                deltas = False
            poll = POLL_SECONDS if cli_process.is_inline() else None
            follower = EventFollower(run.pk, 0, deltas=deltas, poll_seconds=poll).start()
            how = (
                "reading its events every 0.2 s (embedded mode)"
                if cli_process.is_inline()
                else "on the event stream"
            )
            # Said once it is subscribed: from here on nothing the run does is missed.
            self._err(f"following run {run.pk} ({run.status}), {how}; Ctrl-C stops following")
            try:
                code = self._follow(run.pk, follower=follower, worker=None)
            except KeyboardInterrupt:
                self._err(
                    f"stopped following; run {run.pk} goes on "
                    f"(`{MANAGE} tekton show {run.pk}`, `{MANAGE} tekton cancel {run.pk}`)"
                )
                code = EXIT_INTERRUPTED
            finally:
                follower.stop()
        raise typer.Exit(code)

    @command(help="Approve a blocked stage anyway; the run goes on.")
    def approve(
        self,
        run_id: Annotated[int, typer.Argument(help="Run id.")],
        stage: Annotated[str, typer.Argument(help="The blocked stage.")],
        detach: DetachOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        from runs.services import stage_approve

        with self._errors(debug):
            self._action(
                run_id,
                detach=detach,
                action="approve",
                stage=stage,
                call=lambda r: stage_approve(run=r, stage=stage),
            )

    @command(help="Run a blocked (or failed) stage again with a note for its agents.")
    def retry(
        self,
        run_id: Annotated[int, typer.Argument(help="Run id.")],
        stage: Annotated[str, typer.Argument(help="The stage to run again.")],
        note: Annotated[
            str, typer.Option("--note", help="What to change; goes into the stage's prompts.")
        ],
        detach: DetachOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        from runs.services import stage_retry

        with self._errors(debug):
            self._action(
                run_id,
                detach=detach,
                action="retry",
                stage=stage,
                note=note,
                call=lambda r: stage_retry(run=r, stage=stage, note=note),
            )

    @command(help="Change a run's token and/or cost budget (0 = no limit); then retry the stage.")
    def budget(
        self,
        run_id: Annotated[int, typer.Argument(help="Run id.")],
        tokens: Annotated[
            int | None, typer.Option("--tokens", help="Token budget for the whole run.")
        ] = None,
        cost: Annotated[
            str | None, typer.Option("--cost", help="Cost budget for the whole run, in USD.")
        ] = None,
        debug: DebugOpt = False,
    ) -> None:
        from runs.services import run_budget_set

        with self._errors(debug):
            if tokens is None and cost is None:
                raise UsageError("give --tokens N, --cost USD, or both")
            run = run_budget_set(run=self._run_get(run_id), tokens=tokens, cost_usd=cost)
            self._out(budget_line(run))
            if run.status == Run.Status.BLOCKED:
                stage, _ = run_blocked_at(run)
                self._out(
                    f"to run the blocked stage again: {MANAGE} tekton retry {run.pk} "
                    f'{stage or "STAGE"} --note "budget raised"'
                )

    @command(help="Abort a blocked run (it ends cancelled).")
    def abort(
        self, run_id: Annotated[int, typer.Argument(help="Run id.")], debug: DebugOpt = False
    ) -> None:
        from runs.services import run_abort

        with self._errors(debug):
            run = run_abort(run=self._run_get(run_id))
            self._out(f"run {run.pk} {run.status}: {redact(run.reason) or 'aborted'}")

    @command(help="Cancel a queued, running or blocked run.")
    def cancel(
        self, run_id: Annotated[int, typer.Argument(help="Run id.")], debug: DebugOpt = False
    ) -> None:
        from runs.services import run_cancel

        with self._errors(debug):
            run = run_cancel(run=self._run_get(run_id))
            self._out(f"run {run.pk} {run.status}")

    @command(
        help="The terminal UI: runs, a run's stages and streaming transcript, artifacts and "
        "actions, over the REST API and the event stream. With no --url: the local install "
        "(a running server, else one served in this process until you quit)."
    )
    def tui(
        self,
        run_id: Annotated[
            int | None, typer.Argument(metavar="[RUN_ID]", help="Open this run first.")
        ] = None,
        url: Annotated[
            str | None,
            typer.Option("--url", help="A Tekton server (default: TEKTON_URL, else local)."),
        ] = None,
        token: Annotated[
            str | None,
            typer.Option("--token", help="An API token, tkn_... (default: TEKTON_TOKEN)."),
        ] = None,
    ) -> None:
        from tui.main import tui_run

        raise typer.Exit(tui_run(url, token, run_id=run_id))

    @command(name="runs", help="List runs, newest first.")
    def runs_list(
        self,
        limit: Annotated[int, typer.Option("--limit", min=1, help="How many.")] = 20,
        status: Annotated[
            str | None, typer.Option("--status", help="Only runs in this status.")
        ] = None,
        debug: DebugOpt = False,
    ) -> None:
        with self._errors(debug):
            if status is not None and status not in Run.Status.values:
                raise UsageError(
                    f"unknown status {status!r}; statuses: {', '.join(Run.Status.values)}"
                )
            rows = [
                {
                    "id": r.pk,
                    "status": r.status,
                    "goal": r.goal,
                    "repo_path": r.repo_path,
                    "profile_name": r.profile_name,
                    "done": r.stages_done,
                    "total": r.stages_total,
                    "tokens": r.total_tokens,
                    "cost_usd": r.cost_usd,
                    "created_at": r.created_at,
                }
                for r in runs_with_progress(None, status=status)[:limit]
            ]
            if not rows:
                self._out("no runs yet")
                return
            self._console().print(runs_table(rows))

    @command(
        help="A run's stages (status, attempt, confidence, votes), artifacts, tokens and cost."
    )
    def show(
        self,
        run_id: Annotated[int, typer.Argument(help="Run id.")],
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
        debug: DebugOpt = False,
    ) -> None:
        with self._errors(debug):
            try:
                run = run_detail(run_id)
            except Run.DoesNotExist:
                raise Run.DoesNotExist(f"no run with id {run_id}") from None
            data = run_detail_data(run, tests=run_evidence_summary(run))
            if as_json:
                self._out(json.dumps(data, indent=2, default=str))
            else:
                self._console().print(run_detail_renderable(data))

    # Named execute_run: `execute` is BaseCommand's own entry point.
    @command(
        name="execute", hidden=True, help="Run a run's ready stages here (what --detach starts)."
    )
    def execute_run(
        self,
        run_id: Annotated[int, typer.Argument()],
        action: Annotated[str, typer.Option("--action")] = "",
        stage: Annotated[str, typer.Option("--stage")] = "",
        note: Annotated[str, typer.Option("--note")] = "",
    ) -> None:
        from runs import services

        calls: dict[str, Callable[[Run], Run]] = {
            "approve": lambda r: services.stage_approve(run=r, stage=stage),
            "retry": lambda r: services.stage_retry(run=r, stage=stage, note=note),
            "resume": lambda r: services.run_resume(run=r),
        }
        if action:
            if action not in calls:
                raise UsageError(f"unknown action {action!r}")
            # The parent reads one line (runs/cli_process.py: the handshake).
            try:
                calls[action](self._run_get(run_id))
            except _user_errors() as err:
                cli_process.handshake_error(redact(str(err)))
                raise typer.Exit(EXIT_USAGE) from None
            cli_process.handshake_ok()
        cli_process.drive(run_id)
        raise typer.Exit(self._outcome(run_id))

    # --- retrieval ------------------------------------------------------------------------

    @command(
        help="Index a repository's commit for retrieval (incremental: unchanged files are "
        "not embedded again). Exit 2 for a bad repository, 1 when the index is down."
    )
    def index(
        self,
        repo: Annotated[str, typer.Argument(help="The repository's path.")],
        commit: Annotated[str, typer.Option("--commit", help="A commit or branch.")] = "HEAD",
        force: Annotated[bool, typer.Option("--force", help="Embed every file again.")] = False,
        debug: DebugOpt = False,
    ) -> None:
        from runs.retrieval_search import repo_index

        with self._errors(debug):
            console = self._console()
            if console.is_terminal:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

                bar = Progress(
                    TextColumn("indexing"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.description}"), console=console, transient=True,
                )  # fmt: skip
                task = bar.add_task("", total=None)

                def progress(done: int, total: int, path: str) -> None:
                    bar.update(task, completed=done, total=total, description=path[-60:])

                with bar:
                    report = repo_index(
                        repo_path=repo, commit=commit, progress=progress, force=force
                    )
            else:
                report = repo_index(repo_path=repo, commit=commit, force=force)
            if report.already_indexed:
                self._out(
                    f"{report.repo} @ {report.commit[:12]}: already indexed ({report.chunks} chunks)"
                )
                return
            skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
            self._out(
                f"{report.repo} @ {report.commit[:12]}: {report.files} files, "
                f"{report.embedded_files} embedded, {report.reused_files} unchanged, "
                f"{report.chunks} chunks ({report.chunks_added} new) in {report.seconds:.1f} s"
                + (f"; skipped {skipped}" if skipped else "")
            )

    @command(help="Search a repository's index: chunks with path:lines and score, and lessons.")
    def search(
        self,
        query: Annotated[str, typer.Argument(help="What to look for, in words or code.")],
        repo: Annotated[str, typer.Option("--repo", help="The repository's path.")],
        limit: Annotated[int, typer.Option("--limit", min=1, max=50)] = 10,
        commit: Annotated[
            str | None,
            typer.Option("--commit", help="A full commit sha (default: the newest indexed)."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        debug: DebugOpt = False,
    ) -> None:
        from runs.retrieval_search import repo_search

        with self._errors(debug):
            found = repo_search(user=None, repo_path=repo, query=query, k=limit, commit=commit)
            if as_json:
                self._out(json.dumps(found, indent=2))
                return
            if found["warning"]:
                self._err(f"warning: {found['warning']}")
            where = f" @ {found['commit'][:12]}" if found["commit"] else ""
            self._out(f"{len(found['chunks'])} chunk(s) in {found['repo']}{where}")
            for hit in found["chunks"]:
                symbol = f"  {hit['symbol']}" if hit["symbol"] else ""
                self._out(f"{hit['score']:.4f}  {hit['location']}{symbol}")
            if found["lessons"]:
                self._out(f"{len(found['lessons'])} lesson(s)")
                for lesson in found["lessons"]:
                    self._out(f"{lesson['score']:.4f}  {lesson['source']}: {lesson['text'][:160]}")

    # --- workspaces -----------------------------------------------------------------------

    @group(help="The runs' workspaces (git worktrees under TEKTON_WORKSPACE_ROOT).")
    def workspaces(self) -> None:
        pass

    @workspaces.command(
        name="prune",
        help="Remove workspaces no queued, running or blocked run uses, and stale worktree "
        "registrations; branches stay.",
    )
    def workspaces_prune(
        self,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Only list what would be removed.")
        ] = False,
        debug: DebugOpt = False,
    ) -> None:
        from django.conf import settings

        from runs.stage_work import workspaces_prune_orphans

        with self._errors(debug):
            removed = workspaces_prune_orphans(dry_run=dry_run)
            verb = "would remove" if dry_run else "removed"
            for path in removed:
                self._out(f"{verb} {path}")
            root = settings.TEKTON_WORKSPACE_ROOT
            if not removed:
                self._out(f"nothing to prune under {root}")
            else:
                self._out(f"{verb} {len(removed)} path(s) under {root}")
