"""The `tekton` console command the project installs is `manage.py tekton` (issue 12)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path


def test_it_installs_a_tekton_script_that_runs_manage_py_tekton(tmp_path):
    (script,) = entry_points(group="console_scripts", name="tekton")
    assert script.value == "tekton_cli:main"
    binary = Path(sys.executable).parent / "tekton"
    env = {**os.environ, "TEKTON_DATA_DIR": str(tmp_path / "data")}
    # From another folder: the editable install, not the current directory, finds the apps.
    done = subprocess.run(
        [str(binary), "no-such-command"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "error: No such command 'no-such-command'. (see --help)"
