"""Running the system checks: what `GET /api/system/checks/`, the page and
`manage.py tekton check` call.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.db import connections

# Importing the module registers its checks in default_registry.
from syschecks import checks as _checks  # noqa: F401
from syschecks.registry import (
    STATUSES,
    Check,
    CheckContext,
    CheckResult,
    Registry,
    check_execute,
    default_registry,
)

MAX_WORKERS = 8
# Every check bounds its own network waits (2 s); this is the backstop for one that hangs
# anyway, so the table always comes back.
CHECK_DEADLINE_S = 5.0


def checks_run(
    *,
    repo_paths: Iterable[str] | None = None,
    only: Iterable[str] | None = None,
    registry: Registry | None = None,
    deadline_s: float = CHECK_DEADLINE_S,
) -> list[CheckResult]:
    """Run the registered checks and return their results in registration order.

    `repo_paths`: repositories to inspect (one result each; none when not given).
    `only`: check ids or categories to run (all when None); an unknown one raises
    ValueError naming it. Checks run concurrently; the database check runs in the
    caller's thread (Django connections are per thread). A check that raises becomes an
    error result; one still running after `deadline_s` becomes an error result saying so
    and is left to finish in the background. Reads only; never raises for a failing check.
    """
    reg = registry or default_registry
    selected = reg.select(None if only is None else list(only))
    ctx = CheckContext(repo_paths=tuple(str(p) for p in (repo_paths or ())))
    by_check: dict[str, list[CheckResult]] = {}

    pooled = [c for c in selected if not c.uses_database]
    in_caller = [c for c in selected if c.uses_database]
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(MAX_WORKERS, len(pooled))), thread_name_prefix="syschecks"
    )
    try:
        started = time.monotonic()
        futures = {c.id: pool.submit(_pooled_execute, c, ctx) for c in pooled}
        for check in in_caller:
            by_check[check.id] = check_execute(check, ctx)
        for check in pooled:
            remaining = max(0.0, deadline_s - (time.monotonic() - started))
            try:
                by_check[check.id] = futures[check.id].result(timeout=remaining)
            except FutureTimeout:
                by_check[check.id] = [_timed_out(check, deadline_s)]
    finally:
        # Do not wait for a hung check: its thread finishes (or not) on its own.
        pool.shutdown(wait=False, cancel_futures=True)
    return [result for check in selected for result in by_check[check.id]]


def checks_summary(results: Iterable[CheckResult]) -> dict[str, int]:
    """Counts per status: {"ok": n, "warn": n, "error": n} (every key always present)."""
    summary = dict.fromkeys(STATUSES, 0)
    for result in results:
        summary[result.status] += 1
    return summary


def _pooled_execute(check: Check, ctx: CheckContext) -> list[CheckResult]:
    try:
        return check_execute(check, ctx)
    finally:
        # A pool thread that touched the ORM by accident must not leak its connection.
        connections.close_all()


def _timed_out(check: Check, deadline_s: float) -> CheckResult:
    return CheckResult(
        id=check.id,
        title=check.title,
        category=check.category,
        status="error",
        detail=f"the check did not finish within {deadline_s:g} s",
        hint="The service it talks to hangs instead of refusing; check that it is up.",
        duration_ms=round(deadline_s * 1000, 1),
    )
