"""The read commands stay light: run as real processes, they must not import the web
stack, the worker stack or a vendor SDK, nor build the artifact schemas (issue 7,
section 4). What a command imported is read from its own sys.modules when it exits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from runs.management.commands.tekton import reads_only
from tests.runs.test_cli_subprocess import Cli, _git

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")

# Runs manage.py in this interpreter and, when it exits (sys.exit included), writes what
# it imported to TEKTON_PROBE_OUT: every module, and every pydantic model class defined
# outside pydantic (a model's schema is built when its class is created), and the state of
# the cyclic collector (manage.py's exit handler, registered after this one, runs first).
PROBE = r"""
import atexit, gc, json, os, runpy, sys

def _report():
    models = []
    main = sys.modules.get("pydantic.main")
    if main is not None:
        stack = list(main.BaseModel.__subclasses__())
        while stack:
            cls = stack.pop()
            stack.extend(cls.__subclasses__())
            if not cls.__module__.startswith("pydantic"):
                models.append(f"{cls.__module__}.{cls.__qualname__}")
    with open(os.environ["TEKTON_PROBE_OUT"], "w") as out:
        json.dump(
            {
                "modules": sorted(sys.modules),
                "pydantic_models": sorted(models),
                "gc_enabled": gc.isenabled(),
                "gc_frozen": gc.get_freeze_count(),
            },
            out,
        )

atexit.register(_report)
manage = sys.argv[1]
sys.path.insert(0, os.path.dirname(manage))
sys.argv = [manage, *sys.argv[2:]]
runpy.run_path(manage, run_name="__main__")
"""

WEB_AND_WORKERS = (
    "daphne",
    "twisted",
    "rest_framework",
    "drf_spectacular",
    "channels_redis",
    "celery",
    "kombu",
)
# The vendor SDKs, and the HTTP client they and the webhook sender share (a read command
# sends nothing), and the provider layer itself.
VENDOR_SDKS = ("anthropic", "openai", "httpx", "swarm.providers")
# What a read command does not use, made lazy so that it starts at once: typer's markdown
# renderer and pretty tracebacks (runs/cli_typer.py), retrieval's indexer and store
# (runs/retrieval_dispatch.py), the metrics (runs/apps.py) and the admin modules
# (tekton_site/admin_config.py; django.contrib.admin itself is the app, imported by
# Django), and django-prometheus with prometheus_client (a library, not an installed app:
# the web process's middleware imports it). Module names or package prefixes.
DEFERRED = (
    "markdown_it",
    "rich.markdown",
    "rich.traceback",
    "runs.retrieval",
    "swarm.retrieval",
    "runs.metrics",
    "runs.admin",
    "config_profiles.admin",
    "accounts.admin",
    "django_prometheus",
    "prometheus_client",
)
# Django itself imports an installed app's package, its apps module and (from ready()) its
# checks module when it sets up; anything beyond those is the stack.
APP_SHELLS = {
    "rest_framework",
    "rest_framework.apps",
    "rest_framework.checks",
    "drf_spectacular",
    "drf_spectacular.apps",
    "drf_spectacular.checks",
}


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Cli:
    root = tmp_path_factory.mktemp("cli-imports").resolve()
    c = Cli(root)
    c.repo.mkdir()
    (c.repo / "README.md").write_text("# Sample\n")
    _git(c.repo, "init", "-q", "-b", "main")
    _git(c.repo, "add", ".")
    _git(c.repo, "commit", "-q", "-m", "init")
    done = c("migrate", "-v", "0")
    assert done.returncode == 0, done.stderr
    done = c("tekton", "run", "--goal", "g", "--repo", str(c.repo), "--to", "plan")
    assert done.returncode == 0, done.stderr
    return c


def imported(cli: Cli, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "probe.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, MANAGE, *args],
        cwd=cli.root,
        env={**cli.env, "TEKTON_PROBE_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, json.loads(out.read_text())


def found(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    """The modules of `packages` that were imported, installed apps' shells aside."""
    return sorted(m for m in modules if m.split(".")[0] in packages and m not in APP_SHELLS)


@pytest.mark.parametrize(
    "args",
    [("tekton", "runs"), ("tekton", "show", "1"), ("tekton", "--help"), ("help",)],
    ids=["runs", "show", "tekton --help", "help"],
)
def test_read_commands_import_no_web_worker_or_vendor_stack(cli, tmp_path, args):
    done, seen = imported(cli, tmp_path, *args)
    assert done.returncode == 0, done.stderr
    assert found(seen["modules"], WEB_AND_WORKERS + VENDOR_SDKS) == []
    assert seen["pydantic_models"] == []
    assert deferred(seen["modules"]) == []


def deferred(modules: list[str]) -> list[str]:
    return sorted(m for m in modules for d in DEFERRED if m == d or m.startswith(d + "."))


def test_tekton_help_keeps_its_rich_panels_without_the_markdown_renderer(cli, tmp_path):
    done, seen = imported(cli, tmp_path, "tekton", "--help")
    assert done.returncode == 0, done.stderr
    assert "╭─ Commands" in done.stdout and "│ runs " in done.stdout
    assert "typer.rich_utils" in seen["modules"]
    assert deferred(seen["modules"]) == []


def test_a_write_command_still_finds_the_admin_and_the_metrics(cli, tmp_path):
    # The system checks of a write command discover the admin modules (the admin's own
    # checks need its registry), and the URL configuration they load imports them too.
    done, seen = imported(cli, tmp_path, "tekton", "cancel", "424242")
    assert done.returncode == 2
    assert {"runs.admin", "config_profiles.admin"} <= set(seen["modules"])


def test_explain_imports_no_vendor_sdk_and_no_asgi_server(cli, tmp_path):
    done, seen = imported(
        cli, tmp_path, "tekton", "run", "--goal", "g", "--repo", str(cli.repo), "--explain"
    )
    assert done.returncode == 0, done.stderr
    assert "-> offline" in done.stdout
    assert found(seen["modules"], ("daphne", "twisted") + VENDOR_SDKS) == []


def test_memory_show_imports_no_web_worker_or_provider_stack(cli, tmp_path):
    done, seen = imported(cli, tmp_path, "tekton", "memory", "show", "--memory", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert found(seen["modules"], WEB_AND_WORKERS + VENDOR_SDKS) == []


def test_a_write_command_still_runs_the_system_checks(cli, tmp_path):
    # The checks load the URL configuration and with it DRF: that this shows up here
    # proves both that writes keep Django's checks and that the probe sees imports.
    done, seen = imported(cli, tmp_path, "tekton", "cancel", "424242")
    assert done.returncode == 2 and "no run with id 424242" in done.stderr
    assert "rest_framework.views" in found(seen["modules"], WEB_AND_WORKERS)


@pytest.mark.parametrize(
    ("args", "reads"),
    [
        (["runs", "--limit", "3"], True),
        (["show", "4"], True),
        (["--settings", "tekton_site.settings", "--no-color", "show", "4"], True),
        (["check", "--json"], True),
        (["token", "list"], True),
        (["token", "create", "ada"], False),
        (["run", "--goal", "g", "--explain"], True),
        (["run", "--goal", "g"], False),
        (["run", "--resume", "4", "--explain"], False),
        (["approve", "4", "review"], False),
        (["user-ensure"], False),
        (["memory", "show", "3"], True),
        (["memory", "search", "x"], True),
        (["memory", "prune", "--older-than", "14d"], False),
        (["prompt", "fix it", "--explain"], True),
        (["prompt", "fix it"], False),
        (["ask", "claude", "hi"], False),
        ([], False),
    ],
)
def test_only_read_subcommands_skip_the_system_checks(args, reads):
    assert reads_only(args) is reads


def test_a_command_collects_garbage_while_it_works_and_freezes_start_up_at_exit(cli, tmp_path):
    # manage.py pauses the collector for a tekton command's start-up only: the subcommand
    # (a run followed for an hour) must collect as usual. At exit what start-up made is
    # frozen, so the interpreter's last collections do not walk it.
    done, seen = imported(cli, tmp_path, "tekton", "runs")
    assert done.returncode == 0, done.stderr
    assert seen["gc_enabled"] is True
    assert seen["gc_frozen"] > 10_000
    done, seen = imported(cli, tmp_path, "tekton", "cancel", "424242")
    assert done.returncode == 2 and seen["gc_enabled"] is True
