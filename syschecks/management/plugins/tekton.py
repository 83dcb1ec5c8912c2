"""`manage.py tekton check`: Tekton's system checks as a table (or JSON), added to the
tekton command group as a django-typer plugin.

django-typer imports this module when a tekton command is first made, so the checks
themselves are imported inside the subcommand.
"""

# No `from __future__ import annotations`: see runs/management/commands/tekton.py.

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

# typer vendors its own click; its usage errors are these classes, not the click package's.
from typer._click.exceptions import UsageError

from runs.management.commands.tekton import EXIT_FAILED, Command, DebugOpt

_CHECK_STYLE = {"ok": "green", "warn": "yellow", "error": "bold red"}


def checks_table(results: list[dict[str, Any]]) -> Table:
    """The system checks: status, what was checked, what was found, what to do."""
    table = Table(title="system checks", expand=False, show_lines=False)
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("detail")
    table.add_column("hint")
    for r in results:
        status = r["status"]
        table.add_row(
            Text(status, style=_CHECK_STYLE.get(status, "")),
            r["id"],
            r["detail"],
            r["hint"] if status != "ok" else "",
        )
    return table


# Named checks_run: `check` is BaseCommand's own system-check hook, called on every run.
@Command.command(
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
