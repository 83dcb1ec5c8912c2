"""`tekton ask` as a real process, started as the installed `tekton` console command from
another folder: Ctrl-C while a Codex command line hangs ends it, exit 1, the invocation
journaled FAILED and its row failed (issue 12)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.runs.test_cli_subprocess import Cli
from tests.swarm.providers.conftest import fake_tool

TEKTON = str(Path(sys.executable).parent / "tekton")


def _sigint_as_from_a_shell() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_journals_the_invocation_failed(tmp_path):
    cli = Cli(tmp_path)
    assert cli("migrate", "-v", "0").returncode == 0
    tool = fake_tool(tmp_path, "codex", "time.sleep(60)\n")
    memory = tmp_path / "mem"
    env = {**cli.env, "TEKTON_LLM_BACKEND": "auto", "TEKTON_CODEX_BIN": str(tool)}
    proc = subprocess.Popen(
        [TEKTON, "ask", "codex", "hang", "--memory", str(memory)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a shell: Ctrl-C neither ignored nor blocked, whatever an earlier test of
        # this session did to the pytest process's signals (a child inherits both).
        preexec_fn=_sigint_as_from_a_shell,
    )
    calls = tmp_path / "calls.jsonl"  # the fake tool writes it once it has the prompt
    deadline = time.monotonic() + 60
    while not calls.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    status = Path(f"/proc/{proc.pid}/status").read_text()
    masks = {k: v.strip() for k, v in (ln.split(":", 1) for ln in status.splitlines())}
    bit = 1 << (signal.SIGINT - 1)
    assert not int(masks["SigIgn"], 16) & bit and not int(masks["SigBlk"], 16) & bit, masks
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "interrupted: journaled FAILED in" in err and "Traceback" not in err
    meta = json.loads((memory / "latest" / "metadata.json").read_text())
    assert (meta["outcome"], meta["error"]) == ("FAILED", "interrupted")
    assert "· ask codex · FAILED" in (memory / "journal.md").read_text()
    with sqlite3.connect(cli.data / "tekton.sqlite3") as db:
        assert db.execute("SELECT status, error FROM prompts_promptinvocation").fetchall() == [
            ("failed", "interrupted")
        ]
