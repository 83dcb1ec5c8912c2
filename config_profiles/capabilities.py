"""Keeps what model servers refused in the database, for every process: the provider
layer's CapabilityStore (swarm/, no Django) calls these through remember_with, wired in
ConfigProfilesConfig.ready.

The store calls them from engine threads that may run an event loop, where the ORM
refuses to work; each call does its database work in a short thread of its own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import close_old_connections, connection, transaction

from swarm.redact import redact

T = TypeVar("T")


def _in_thread(work: Callable[[], T]) -> T:
    box: dict[str, Any] = {}

    def target() -> None:
        close_old_connections()
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the caller, which logs it
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=target, name="tekton-capabilities", daemon=True)
    thread.start()
    thread.join(timeout=10)
    if "error" in box:
        raise box["error"]
    return box.get("value")  # type: ignore[return-value]


def capability_refusal_record(
    backend: str, base_url: str, model: str, feature: str, detail: str
) -> None:
    """Add `feature` to what (backend, base_url, model) refused; idempotent."""
    from config_profiles.models import LearnedCapability

    def work() -> None:
        with transaction.atomic():
            row, _ = LearnedCapability.objects.select_for_update().get_or_create(
                backend=backend, base_url=base_url, model=model
            )
            if feature not in row.refused:
                row.refused = [*row.refused, feature]
            row.detail = redact(detail)[:500]
            row.save()

    _in_thread(work)


def capability_refusals_load() -> list[tuple[str, str, str, str]]:
    """Every (backend, base_url, model, feature) refusal on record."""
    from config_profiles.models import LearnedCapability

    def work() -> list[tuple[str, str, str, str]]:
        rows = LearnedCapability.objects.values_list("backend", "base_url", "model", "refused")
        return [(b, u, m, f) for b, u, m, refused in rows for f in refused]

    return _in_thread(work)


_attached = threading.Lock()
_attached_done = False


def capability_memory_attach() -> None:
    """Wire the process-wide CapabilityStore to the database, once per process. Called by
    what builds a router for stages (runs.stage_inputs), not at start-up: a command that
    calls no model imports no provider code (the CLI starts at once)."""
    global _attached_done
    with _attached:
        if _attached_done:
            return
        from swarm.providers.capabilities import DEFAULT_STORE

        DEFAULT_STORE.remember_with(
            on_refuse=capability_refusal_record, load=capability_refusals_load
        )
        _attached_done = True
