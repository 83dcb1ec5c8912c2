"""runs.execution._db_retry: a stage's outcome write through a database that went away."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from runs import execution


def _failing(times: int):
    tries: list[int] = []

    def write() -> str:
        tries.append(1)
        if len(tries) <= times:
            raise OperationalError("terminating connection due to administrator command")
        return "recorded"

    return write, tries


def test_a_write_goes_through_once_the_database_is_back(monkeypatch, settings):
    monkeypatch.setattr(execution, "DB_RETRY_PAUSE_S", 0.0)
    settings.TEKTON_STAGE_LEASE_SECONDS = 5
    write, tries = _failing(2)
    assert execution._db_retry(write) == "recorded"
    assert len(tries) == 3


def test_a_database_gone_longer_than_the_lease_is_an_error(monkeypatch, settings):
    monkeypatch.setattr(execution, "DB_RETRY_PAUSE_S", 0.0)
    settings.TEKTON_STAGE_LEASE_SECONDS = 0
    write, tries = _failing(5)
    with pytest.raises(OperationalError):
        execution._db_retry(write)
    assert len(tries) == 1


def test_other_errors_are_not_retried(monkeypatch):
    def write() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        execution._db_retry(write)
