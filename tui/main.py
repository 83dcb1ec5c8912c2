"""`tui_run(url, token)`: the terminal UI's entry point (`python -m tui`, and the lead's
`manage.py tekton tui`). Returns the exit code: 0 after a normal quit, 2 when it could not
start (one line on stderr says why)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TextIO
from urllib.parse import urlsplit

from tui.client import ApiClient, ApiError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK


async def preflight(url: str, token: str | None) -> str | None:
    """One authenticated call before the screen takes over: a wrong URL or token is
    reported as a line in the shell, not inside an empty table."""
    client = ApiClient(url, token)
    try:
        await client.runs()
    except ApiError as exc:
        return str(exc)
    finally:
        await client.aclose()
    return None


def tui_run(
    url: str | None = None,
    token: str | None = None,
    *,
    run_id: int | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the terminal UI against `url` with `token` (else TEKTON_URL / TEKTON_TOKEN),
    on the run list, or on run `run_id` (back goes to the list). With neither URL: the
    local install (a running server, else an embedded one), with a token made for this
    session and revoked on exit."""
    err = err or sys.stderr
    url = (url or os.environ.get("TEKTON_URL") or "").strip() or None
    token = (token or os.environ.get("TEKTON_TOKEN") or "").strip() or None
    if url is not None and not urlsplit(url).scheme.startswith("http"):
        print(f"tekton tui: error: --url must be an http(s) URL, got {url!r}", file=err)
        return 2
    session = None
    notice = ""
    where = url or ""
    app = None
    try:
        if url is None or (token is None and is_loopback(url)):
            from tui import local

            print("tekton tui: connecting to the local install…", file=err, flush=True)
            try:
                session = local.local_session(url=url)
            except local.LocalError as exc:
                print(f"tekton tui: error: {exc}", file=err)
                return 2
            url, token = session.url, session.token
            where = url
            if session.embedded:
                where = f"{url} (embedded)"
                notice = (
                    f"No server was running, so this UI serves the API itself on {url} "
                    f"(log: {session.log_path})."
                )
                if session.inline:
                    notice += (
                        " Runs you launch here execute in this process and stop when it exits."
                    )
        elif token is None:
            print(
                f"tekton tui: error: {url} is not local: pass --token or set TEKTON_TOKEN",
                file=err,
            )
            return 2
        problem = asyncio.run(preflight(url, token))
        if problem is not None:
            print(f"tekton tui: error: {problem}", file=err)
            return 2
        from tui.app import TektonApp

        app = TektonApp(
            ApiClient(url, token),
            notice=notice,
            where=where,
            default_repo=os.getcwd() if session is not None else "",
            start_run=run_id,
        )
        previous = signal.signal(signal.SIGTERM, lambda *_: app.exit(0))
        try:
            app.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
        return app.return_code or 0
    finally:
        if session is not None:
            unfinished = []
            if session.embedded and session.inline and app is not None:
                unfinished = session.unfinished(app.launched)
            session.close()
            if session.embedded:
                print(f"tekton tui: stopped the embedded server on {session.url}", file=err)
                if unfinished:
                    ids = ", ".join(str(i) for i in unfinished)
                    what = f"runs {ids} were" if len(unfinished) > 1 else f"run {ids} was"
                    print(
                        f"tekton tui: {what} launched in embedded mode and stopped with it; "
                        f"continue with `manage.py tekton run --resume {unfinished[0]}`",
                        file=err,
                    )
