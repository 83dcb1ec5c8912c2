"""The example Procfile and systemd units name programs, modules and management commands
that exist in this install, so an operator who copies them gets processes that start."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy"
VENV_BIN = Path(sys.executable).parent


def _procfile() -> dict[str, str]:
    lines = (DEPLOY / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def _unit_commands() -> list[str]:
    commands = []
    for unit in sorted((DEPLOY / "systemd").glob("tekton-*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart=") and "/.venv/bin/" in line:
                commands.append(line.removeprefix("ExecStart=").split("/.venv/bin/", 1)[1])
    return commands


def _commands() -> list[str]:
    out = []
    for command in [*_procfile().values(), *_unit_commands()]:
        out.extend(part.strip() for part in command.split("&&"))
    return out


def test_the_procfile_has_the_whole_process_set():
    assert set(_procfile()) == {"release", "web", "worker", "milvus"}


@pytest.mark.parametrize("command", _commands())
def test_each_command_names_what_this_install_has(command):
    argv = shlex.split(re.sub(r"\$\{[^}]*\}", "x", command))
    program = argv[0]
    assert program == "python" or (VENV_BIN / program).exists(), f"{program} is not installed"
    if program == "python":
        assert argv[1] == "manage.py" and argv[2] in get_commands(), command
    for arg in argv[1:]:
        if re.fullmatch(r"[a-z_.]+:[a-z_]+", arg):  # an ASGI application, module:attribute
            # Found and defined without importing it (the ASGI module sets the process up).
            module, attribute = arg.split(":")
            spec = importlib.util.find_spec(module)
            assert spec is not None and spec.origin, arg
            assert re.search(rf"(?m)^{attribute}\b.*=", Path(spec.origin).read_text()), arg
    if program == "celery":
        assert argv[argv.index("-A") + 1] == "tekton_site"
