"""`manage.py tekton` called in-process, for the tests of every app that adds to it."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command
from django.core.management.base import CommandError


def tekton(*args: str) -> tuple[int, str, str]:
    """Run the command; return (exit code, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    try:
        call_command("tekton", *args, stdout=out, stderr=err)
    except CommandError as exc:
        # From a terminal a usage error's message goes to stderr; call_command raises it.
        return exc.returncode, out.getvalue(), err.getvalue() or str(exc)
    return 0, out.getvalue(), err.getvalue()
