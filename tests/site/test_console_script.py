"""The `tekton` console command the project installs is `manage.py tekton` (issue 12); it
is run as a process in tests/prompts/test_cli_process.py."""

from __future__ import annotations

from importlib.metadata import entry_points

import tekton_cli


def test_it_installs_a_tekton_script_that_runs_manage_py_tekton(monkeypatch):
    (script,) = entry_points(group="console_scripts", name="tekton")
    assert script.value == "tekton_cli:main"
    seen = []
    monkeypatch.setattr("django.core.management.execute_from_command_line", seen.append)
    monkeypatch.setattr("sys.argv", ["/venv/bin/tekton", "runs", "--limit", "3"])
    tekton_cli.main()
    assert seen == [["manage.py", "tekton", "runs", "--limit", "3"]]
