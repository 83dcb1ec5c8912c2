"""The system checks registry: check functions with stable ids, and how one is executed.

A check is a plain function `fn(ctx: CheckContext) -> CheckResult | Iterable[CheckResult]`
registered with `@register(id=..., title=..., category=...)`. It reports what it found;
`check_execute` fills in the id, title, category and duration it left blank, and turns
an exception into an error result with one redacted line, never a traceback.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from swarm.redact import redact

Status = Literal["ok", "warn", "error"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "error")


@dataclass(frozen=True)
class CheckResult:
    """One line of the checks table.

    `id` is stable ("redis", "provider.anthropic", "repository:/srv/app"); `detail` is one
    readable line of what was found; `hint` says what to do about it (empty when ok).
    """

    id: str = ""
    title: str = ""
    status: Status = "ok"
    detail: str = ""
    hint: str = ""
    duration_ms: float = 0.0
    category: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status must be one of {STATUSES}, got {self.status!r}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CheckContext:
    """What a check may need from its caller; everything else comes from settings."""

    repo_paths: tuple[str, ...] = ()


CheckFunction = Callable[[CheckContext], "CheckResult | Iterable[CheckResult] | None"]


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    category: str
    func: CheckFunction = field(compare=False)
    # Checks that use Django's database connection run in the caller's thread: connections
    # are per thread, and a pool thread's connection would outlive the check.
    uses_database: bool = False


class Registry:
    """An ordered set of checks; `default_registry` holds the ones in syschecks.checks."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def register(
        self, *, id: str, title: str, category: str, uses_database: bool = False
    ) -> Callable[[CheckFunction], CheckFunction]:
        if not id or any(ch.isspace() for ch in id):
            raise ValueError(f"check id must be a non-empty word, got {id!r}")

        def decorator(func: CheckFunction) -> CheckFunction:
            existing = self._checks.get(id)
            # Re-importing the same module (autoreload, tests) registers the same function
            # again; a different function under the same id is a programming error.
            if existing is not None and _qualname(existing.func) != _qualname(func):
                raise ValueError(
                    f"check id {id!r} is already registered by {_qualname(existing.func)}"
                )
            self._checks[id] = Check(
                id=id, title=title, category=category, func=func, uses_database=uses_database
            )
            return func

        return decorator

    def checks(self) -> list[Check]:
        return list(self._checks.values())

    def get(self, id: str) -> Check | None:
        return self._checks.get(id)

    def select(self, only: Iterable[str] | None) -> list[Check]:
        """The checks whose id or category is in `only` (all when None), in registry order.

        Raises ValueError naming the unknown entries and the known ids.
        """
        checks = self.checks()
        if only is None:
            return checks
        wanted = set(only)
        known = {c.id for c in checks} | {c.category for c in checks}
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(
                f"unknown check {', '.join(map(repr, unknown))}; known checks: "
                f"{', '.join(c.id for c in checks)}"
            )
        return [c for c in checks if c.id in wanted or c.category in wanted]


def _qualname(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


default_registry = Registry()
register = default_registry.register


def one_line(exc: BaseException) -> str:
    """An exception as one redacted line: `TypeName: first line of its message`."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return redact(text)


def check_execute(check: Check, ctx: CheckContext) -> list[CheckResult]:
    """Run one check and return its results, completed and redacted; never raises.

    Blank ids, titles and categories take the check's own; the duration is the whole
    check's wall time. An exception becomes one error result carrying its message.
    """
    started = time.monotonic()
    try:
        produced = check.func(ctx)
        if produced is None:
            items: list[CheckResult] = []
        elif isinstance(produced, CheckResult):
            items = [produced]
        else:
            items = list(produced)
        for item in items:
            if not isinstance(item, CheckResult):
                raise TypeError(
                    f"check {check.id} returned {type(item).__name__}, expected CheckResult"
                )
    except Exception as exc:  # a broken check is a finding, not a crash of the whole table
        items = [
            CheckResult(
                status="error",
                detail=f"the check itself failed: {one_line(exc)}",
                hint="This is a bug or an unexpected environment; run the check again with "
                "logging at DEBUG to see more.",
            )
        ]
    duration_ms = round((time.monotonic() - started) * 1000, 3)
    return [
        dataclasses.replace(
            item,
            id=item.id or check.id,
            title=item.title or check.title,
            category=item.category or check.category,
            detail=redact(item.detail),
            hint=redact(item.hint),
            duration_ms=item.duration_ms or duration_ms,
        )
        for item in items
    ]
