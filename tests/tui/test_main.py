"""tui_run's start-up refusals: one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import io
import socket

from tui.main import tui_run


def run(url, token=None) -> tuple[int, str]:
    err = io.StringIO()
    code = tui_run(url, token, err=err)
    return code, err.getvalue()


def test_a_server_that_does_not_answer_is_one_line_and_exit_2(monkeypatch):
    monkeypatch.delenv("TEKTON_TOKEN", raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        code, err = run(f"http://127.0.0.1:{port}", "tkn_not-a-real-one")
    assert code == 2
    assert err == f"tekton tui: error: cannot reach http://127.0.0.1:{port}: connection refused\n"


def test_a_remote_server_needs_a_token(monkeypatch):
    monkeypatch.delenv("TEKTON_TOKEN", raising=False)
    code, err = run("https://tekton.example.invalid")
    assert code == 2
    assert err == (
        "tekton tui: error: https://tekton.example.invalid is not local: "
        "pass --token or set TEKTON_TOKEN\n"
    )


def test_a_url_that_is_not_http_is_refused(monkeypatch):
    code, err = run("ftp://tekton.example.invalid", "tkn_x")
    assert (code, err.count("\n")) == (2, 1)
    assert "must be an http(s) URL" in err


def test_the_environment_supplies_url_and_token(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        monkeypatch.setenv("TEKTON_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("TEKTON_TOKEN", "tkn_from-env")
        code, err = run(None)
    assert code == 2 and "connection refused" in err
