"""runs/cli_typer.py: the stand-ins typer.rich_utils imports become the real classes."""

from __future__ import annotations

import sys

from rich.markdown import Markdown
from rich.traceback import Traceback

from runs import cli_typer


def test_a_stand_in_makes_real_instances_and_answers_for_the_real_class():
    stand_in = cli_typer._stand_in("rich.markdown", "Markdown")
    made = stand_in("# title", style="bold")
    assert type(made) is Markdown and made.markup == "# title"
    assert isinstance(made, stand_in) and issubclass(Markdown, stand_in)
    try:
        raise ValueError("boom")
    except ValueError as error:
        shown = cli_typer._stand_in("rich.traceback", "Traceback").from_exception(
            type(error), error, error.__traceback__
        )
    assert type(shown) is Traceback


def test_the_stand_in_modules_leave_sys_modules(monkeypatch):
    monkeypatch.delitem(sys.modules, "rich.markdown")
    with cli_typer._stand_ins():
        from rich.markdown import Markdown as inside

        assert sys.modules["rich.markdown"].__name__ == "rich.markdown"
        assert "stand-in" in (sys.modules["rich.markdown"].__doc__ or "")
    assert "rich.markdown" not in sys.modules
    assert type(inside("x")).__module__ == "rich.markdown"


def _callbacks(app) -> list:
    found = [info.callback for info in app.registered_commands]
    if app.registered_callback is not None:
        found.append(app.registered_callback.callback)
    for group in app.registered_groups:
        found += _callbacks(group.typer_instance)
    return [f for f in found if f is not None]


def test_the_tekton_subcommands_annotations_are_objects_not_strings():
    # typer reads every subcommand's annotations twice whenever a tekton command starts
    # (inspect.signature and get_type_hints); as strings (`from __future__ import
    # annotations`) each one is compiled and evaluated again, some 10 ms of every start.
    from runs.management.commands.tekton import Command

    callbacks = _callbacks(Command().typer_app)
    names = {f.__name__ for f in callbacks}
    assert {"run", "runs_list", "show", "token_create", "checks_run"} <= names, names
    stringly = [
        f"{f.__module__}.{f.__qualname__}: {name}"
        for f in callbacks
        for name, annotation in f.__annotations__.items()
        if isinstance(annotation, str)
    ]
    assert stringly == []
