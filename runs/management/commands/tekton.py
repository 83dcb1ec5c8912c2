"""`manage.py tekton`: launch, follow and steer Diamond v5 runs from a terminal.

Thin adapter: parse, one service (or selector) call, render (runs/cli_render.py).

Exit codes: 0 the run's last stage succeeded (or the command did what it was asked);
1 the run failed or was cancelled, or an unexpected error; 2 a usage error (bad flag or
value, unknown run, an action the run's state does not allow); 3 the run is blocked and
waits for a person (the message names `approve`, `retry` and `abort`).

Following a run: without --detach the command polls the run's events from the database
after the last seq (every 0.2 s) and shows them, as a live Progress display on a
terminal and as one plain line per event otherwise. The same happens in both execution
modes; in embedded (inline) mode this process also runs the stages, in a background
thread. Ctrl-C while following: in inline mode the run would die with this process, so
it is cancelled (exit 1); in celery mode the workers go on with it and the command only
stops following (exit 130).

`--consensus-free` is repeatable (`--consensus-free code --consensus-free test_debug`)
and also takes a comma-separated list (`--consensus-free code,test_debug`); click does
not let an option swallow several space-separated values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from django.conf import settings
from django.core.management.base import CommandError
from django.db import connections
from django.db.models import Count, Q
from django_typer.management import TyperCommand, command, group

# typer vendors its own click; its usage errors are these classes, not the click package's.
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from config_profiles.services import ProfileError
from runs.cli_render import (
    FollowView,
    checks_table,
    console_for,
    explain_renderable,
    run_detail_data,
    run_detail_renderable,
    runs_table,
    tokens_table,
    unblock_hint,
)
from runs.models import Run, StageRun
from swarm.redact import redact
from swarm.stages import UnknownStageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BLOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
POLL_SECONDS = 0.2
MANAGE = "manage.py"

DebugOpt = Annotated[bool, typer.Option("--debug", help="Print the full traceback on errors.")]
DetachOpt = Annotated[
    bool,
    typer.Option(
        "--detach", help="Print the run id and return; the run goes on without this command."
    ),
]


def _user_errors() -> tuple[type[BaseException], ...]:
    from runs.services import RunInputError, RunStateError

    return (RunInputError, RunStateError, ProfileError, UnknownStageError, Run.DoesNotExist)


def _inline() -> bool:
    return settings.TEKTON_EXECUTION == "inline"


def _drive(run_id: int) -> None:
    """Run the run's stages in this thread until nothing here can move it on.

    run_inline returns when nothing is ready; a stage still running in another thread
    (a dispatcher thread, review beside threat) means more may become ready, so look again.
    """
    from runs.dispatch import run_inline

    idle = 0
    while True:
        run_inline(run_id)
        status = Run.objects.values_list("status", flat=True).get(pk=run_id)
        if status not in (Run.Status.QUEUED, Run.Status.RUNNING):
            return
        if StageRun.objects.filter(run_id=run_id, status=StageRun.Status.RUNNING).exists():
            idle = 0
        else:
            idle += 1
            if idle >= 3:  # nothing running and nothing ready: this process cannot help
                return
        time.sleep(POLL_SECONDS)


class _Worker(threading.Thread):
    """Runs `fn` in a daemon thread, keeps its exception for the main thread, and closes
    the thread's own database connections (Django opens one per thread)."""

    def __init__(self, fn: Callable[[], Any]):
        super().__init__(name="tekton-inline", daemon=True)
        self.fn = fn
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as err:  # handed to the main thread, which reports it
            self.error = err
        finally:
            connections.close_all()


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

    # --- plumbing ---------------------------------------------------------------------

    def _console(self):
        return console_for(self.stdout._out)

    def _out(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def _err(self, text: str) -> None:
        self.stderr.write(redact(text))
        self.stderr.flush()

    @contextmanager
    def _errors(self, debug: bool) -> Iterator[None]:
        """Turn what can go wrong into one line on stderr and an exit code."""
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
        except Exception as err:
            message = " ".join(str(err).split()) or type(err).__name__
            if debug:
                self._err(traceback.format_exc())
                self._err(f"error: {message}")
            else:
                self._err(f"error: {message} (rerun with --debug for the traceback)")
            raise typer.Exit(EXIT_FAILED) from None

    def _run_get(self, run_id: int) -> Run:
        from runs.selectors import run_get

        try:
            return run_get(run_id)
        except Run.DoesNotExist:
            raise Run.DoesNotExist(f"no run with id {run_id}") from None

    # --- following ----------------------------------------------------------------------

    def _follow(self, run_id: int, *, after_seq: int, worker: _Worker | None) -> int:
        """Show the run's events after `after_seq` until it ends, blocks or (inline) the
        worker stops; return the exit code for where the run got to."""
        from runs.selectors import run_detail, run_events_after

        view = FollowView.for_run(run_detail(run_id))
        console = self._console()
        live = console.is_terminal
        progress = view.progress_start(console) if live else None
        if progress is not None:
            progress.start()
        try:
            worker_done_seen = False
            while True:
                events = run_events_after(run_id, after_seq)
                for event in events:
                    after_seq = event.seq
                    line = view.apply(event)
                    if not live:
                        self._out(line)
                if view.final_kind:
                    break
                if worker is not None:
                    if not worker.is_alive():
                        if worker_done_seen and not events:
                            break
                        worker_done_seen = True
                        continue
                else:
                    status = Run.objects.values_list("status", flat=True).get(pk=run_id)
                    if status == Run.Status.BLOCKED and not events:
                        break
                    if status in Run.FINISHED and not events:
                        break
                time.sleep(POLL_SECONDS)
        finally:
            if progress is not None:
                progress.stop()
        if worker is not None:
            worker.join()
            if worker.error is not None:
                raise worker.error
        return self._outcome(run_id)

    def _outcome(self, run_id: int) -> int:
        run = Run.objects.get(pk=run_id)
        if run.status == Run.Status.SUCCEEDED:
            from runs.artifacts_store import artifact_dir

            where = run.output_dir or str(artifact_dir(run))
            self._out(f"run {run.pk} succeeded; artifacts in {redact(where)}")
            return EXIT_OK
        if run.status == Run.Status.BLOCKED:
            stage = (
                StageRun.objects.filter(run=run, status=StageRun.Status.BLOCKED)
                .values_list("stage", flat=True)
                .first()
            )
            reason = (
                StageRun.objects.filter(run=run, stage=stage)
                .values_list("reason", flat=True)
                .first()
                if stage
                else run.reason
            )
            if reason:
                self._err(f"blocked: {' '.join(reason.split())}")
            self._err(unblock_hint(run.pk, stage, MANAGE))
            return EXIT_BLOCKED
        if run.status in (Run.Status.FAILED, Run.Status.CANCELLED):
            self._err(f"run {run.pk} {run.status}" + (f": {run.reason}" if run.reason else ""))
            return EXIT_FAILED
        self._err(
            f"run {run.pk} is {run.status} and nothing here can move it on; "
            f"see `{MANAGE} tekton show {run.pk}`"
        )
        return EXIT_FAILED

    def _go(
        self, run: Run, *, after_seq: int, detach: bool, start: Callable[[], None] | None
    ) -> None:
        """After a service queued work on `run`: follow it (running it here in inline mode)
        or, with detach, hand it to a detached process and return. Ends with typer.Exit."""
        if detach:
            if _inline():
                self._spawn_execute(run.pk)
            self._out(str(run.pk))
            raise typer.Exit(EXIT_OK)
        worker = None
        if _inline():
            worker = _Worker(start or (lambda: _drive(run.pk)))
            worker.start()
        try:
            code = self._follow(run.pk, after_seq=after_seq, worker=worker)
        except KeyboardInterrupt:
            code = self._interrupted(run.pk, worker)
        raise typer.Exit(code)

    def _interrupted(self, run_id: int, worker: _Worker | None) -> int:
        if worker is None:
            self._err(
                f"stopped following; run {run_id} goes on in the workers "
                f"(`{MANAGE} tekton show {run_id}`, `{MANAGE} tekton cancel {run_id}`)"
            )
            return EXIT_INTERRUPTED
        from runs.services import RunStateError, run_cancel

        try:
            run_cancel(run=Run.objects.get(pk=run_id))
            self._err(
                f"interrupted: run {run_id} cancelled (resume it with `{MANAGE} tekton run --resume {run_id}`)"
            )
        except RunStateError as err:
            self._err(f"interrupted: {err}")
        worker.join(timeout=15)
        return EXIT_FAILED

    def _log_path(self, run_id: int, what: str) -> Path:
        logs = Path(settings.TEKTON_DATA_DIR) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs / f"run-{run_id}-{what}.log"

    def _execute_argv(self, run_id: int, *extra: str) -> list[str]:
        return [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "tekton",
            "execute",
            str(run_id),
            *extra,
        ]

    def _spawn_execute(self, run_id: int) -> None:
        """Start `manage.py tekton execute RUN_ID` in its own session, so the run goes on
        after this command (and its terminal) is gone. Its output goes to a log file."""
        with open(self._log_path(run_id, "execute"), "ab") as log:
            subprocess.Popen(
                self._execute_argv(run_id),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )

    def _detached_action(self, run_id: int, action: str, stage: str = "", note: str = "") -> None:
        """Inline mode, --detach on approve/retry/resume: the service dispatches the next
        stages in the calling process, so a detached child makes the call and runs them.
        It reports the call's result on its first stdout line ("ok" / "error: ..."), and
        this command exits with that (0 / 2) while the child goes on."""
        argv = self._execute_argv(run_id, "--action", action, "--stage", stage, "--note", note)
        with open(self._log_path(run_id, action), "ab") as log:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                close_fds=True,
                text=True,
            )
        assert child.stdout is not None
        first = child.stdout.readline().strip()
        child.stdout.close()
        if first == "ok":
            self._out(str(run_id))
            raise typer.Exit(EXIT_OK)
        if first.startswith("error: "):
            self._err(first)
            raise typer.Exit(EXIT_USAGE)
        self._err(
            f"error: the background process stopped early; see {self._log_path(run_id, action)}"
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
    ) -> None:
        """approve / retry / resume: one service call, then follow (or detach)."""
        run = self._run_get(run_id)
        if detach and _inline():
            self._detached_action(run.pk, action, stage, note)
        after = run.event_seq
        run = call(run)
        self._go(run, after_seq=after, detach=detach, start=None)

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
    ) -> None:
        from runs import services

        with self._errors(debug):
            if resume is not None:
                self._action(
                    resume,
                    detach=detach,
                    action="resume",
                    call=lambda r: services.run_resume(run=r),
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
            }
            if explain:
                plan = services.run_plan(**kwargs)
                self._console().print(
                    explain_renderable(plan.explain(), goal=plan.goal, repo_path=plan.repo_path)
                )
                raise typer.Exit(EXIT_OK)
            run = services.run_create(
                **kwargs, output_dir=str(output) if output else None, dispatch=not _inline()
            )
            if not detach:
                self._out(f"run {run.pk} created ({len(run.config.get('stages', []))} stages)")
            self._go(run, after_seq=0, detach=detach, start=None)

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

    @command(name="runs", help="List runs, newest first.")
    def runs_list(
        self,
        limit: Annotated[int, typer.Option("--limit", min=1, help="How many.")] = 20,
        status: Annotated[
            str | None, typer.Option("--status", help="Only runs in this status.")
        ] = None,
        debug: DebugOpt = False,
    ) -> None:
        from runs.selectors import runs_visible_to

        with self._errors(debug):
            if status is not None and status not in Run.Status.values:
                raise UsageError(
                    f"unknown status {status!r}; statuses: {', '.join(Run.Status.values)}"
                )
            done = (StageRun.Status.SUCCEEDED, StageRun.Status.SKIPPED)
            qs = runs_visible_to(None)
            if status:
                qs = qs.filter(status=status)
            # Meta.ordering is ignored once the query aggregates: order explicitly.
            qs = qs.annotate(
                n_total=Count("stages"), n_done=Count("stages", filter=Q(stages__status__in=done))
            ).order_by("-created_at", "-id")
            rows = [
                {
                    "id": r.pk,
                    "status": r.status,
                    "goal": r.goal,
                    "repo_path": r.repo_path,
                    "profile_name": r.profile_name,
                    "done": r.n_done,
                    "total": r.n_total,
                    "tokens": r.total_tokens,
                    "cost_usd": r.cost_usd,
                    "created_at": r.created_at,
                }
                for r in qs[:limit]
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
        from runs.selectors import run_detail

        with self._errors(debug):
            try:
                run = run_detail(run_id)
            except Run.DoesNotExist:
                raise Run.DoesNotExist(f"no run with id {run_id}") from None
            data = run_detail_data(run)
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
            # The parent reads one line: "ok" or "error: ..."; after it, stdout goes to
            # the log (stderr) so a closed pipe can never break the run.
            try:
                calls[action](self._run_get(run_id))
            except _user_errors() as err:
                print(f"error: {redact(str(err))}", flush=True)
                raise typer.Exit(EXIT_USAGE) from None
            print("ok", flush=True)
            sys.stdout.flush()
            os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        _drive(run_id)
        raise typer.Exit(self._outcome(run_id))

    # --- system checks and API tokens -------------------------------------------------

    # Named checks_run: `check` is BaseCommand's own system-check hook, called on every run.
    @command(
        name="check",
        help="Check credentials, services, repositories and sandbox guards; exit 1 on error.",
    )
    def checks_run(
        self,
        repo: Annotated[
            list[Path] | None,
            typer.Option(
                "--repo", help="A repository to check (repeatable; default: those of recent runs)."
            ),
        ] = None,
        only: Annotated[
            list[str] | None, typer.Option("--only", help="A check id or category (repeatable).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
        debug: DebugOpt = False,
    ) -> None:
        from runs.selectors import run_repositories_recent
        from syschecks.services import checks_run, checks_summary

        with self._errors(debug):
            paths = [str(p) for p in repo] if repo else run_repositories_recent(None)
            try:
                found = checks_run(repo_paths=paths, only=only or None)
            except ValueError as err:  # an unknown id in --only
                raise UsageError(str(err)) from None
            summary = checks_summary(found)
            results = [r.as_dict() for r in found]
            if as_json:
                self._out(json.dumps({"summary": summary, "checks": results}, indent=2))
            else:
                self._console().print(checks_table(results))
                self._out(f"{summary['ok']} ok, {summary['warn']} warn, {summary['error']} error")
        if summary["error"]:
            raise typer.Exit(EXIT_FAILED)

    @group(help="API tokens: create (shown once), list, revoke.")
    def token(self) -> None:
        pass

    @token.command(name="create", help="Create a token for USERNAME; the token is the last line.")
    def token_create(
        self,
        username: Annotated[str, typer.Argument(help="An existing user.")],
        name: Annotated[str, typer.Option("--name", help="What the token is for.")] = "",
        debug: DebugOpt = False,
    ) -> None:
        from django.contrib.auth import get_user_model

        from accounts.services import TokenError, token_create

        with self._errors(debug):
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                raise UsageError(f"no user named {username!r}")
            try:
                token, raw = token_create(user=user, name=name)
            except TokenError as err:
                raise UsageError(str(err)) from None
            self._out(
                f"token {token.pk} for {username} (prefix tkn_{token.prefix}); it is shown once:"
            )
            self._out(raw)

    @token.command(name="list", help="List tokens (never their secrets).")
    def token_list(
        self,
        username: Annotated[str | None, typer.Option("--user", help="Only this user's.")] = None,
        debug: DebugOpt = False,
    ) -> None:
        from django.contrib.auth import get_user_model

        from accounts.services import token_list

        with self._errors(debug):
            user = None
            if username is not None:
                user = get_user_model().objects.filter(username=username).first()
                if user is None:
                    raise UsageError(f"no user named {username!r}")
            rows = [
                {
                    "id": t.pk,
                    "user": t.user.get_username(),
                    "name": t.name,
                    "prefix": f"tkn_{t.prefix}",
                    "created_at": t.created_at.strftime("%Y-%m-%d %H:%M"),
                    "last_used_at": t.last_used_at and t.last_used_at.strftime("%Y-%m-%d %H:%M"),
                    "revoked_at": t.revoked_at and t.revoked_at.strftime("%Y-%m-%d %H:%M"),
                }
                for t in token_list(user=user)
            ]
            if not rows:
                self._out("no tokens")
                return
            self._console().print(tokens_table(rows))

    @token.command(
        name="revoke", help="Revoke a token by id or by its display prefix (tkn_ and 8 characters)."
    )
    def token_revoke(
        self,
        which: Annotated[str, typer.Argument(help="Token id or prefix.")],
        debug: DebugOpt = False,
    ) -> None:
        from accounts.services import TokenError, token_revoke

        with self._errors(debug):
            try:
                if which.isdigit():
                    token = token_revoke(token_id=int(which))
                else:
                    token = token_revoke(prefix=which)
            except TokenError as err:
                raise UsageError(str(err)) from None
            self._out(f"token {token.pk} (tkn_{token.prefix}) revoked")

    @command(
        name="user-ensure",
        help="Make sure a staff login exists for the dashboard (its password is printed once).",
    )
    def user_ensure(
        self,
        username: Annotated[str, typer.Argument(help="The login name.")] = "admin",
        debug: DebugOpt = False,
    ) -> None:
        import secrets

        from django.contrib.auth import get_user_model

        with self._errors(debug):
            users = get_user_model().objects
            if users.filter(username=username).exists():
                self._out(
                    f"login {username!r} exists (new password: manage.py changepassword {username})"
                )
                return
            # From the environment when given, else generated and shown this one time.
            password = os.environ.get("TEKTON_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            users.create_superuser(username=username, email="", password=password)
            if os.environ.get("TEKTON_ADMIN_PASSWORD"):
                self._out(f"created login {username!r} with the password in TEKTON_ADMIN_PASSWORD")
            else:
                self._out(f"created login {username!r}, password: {password}  (shown once)")
