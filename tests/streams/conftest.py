"""Fixtures of the stream tests: runs with events, API tokens, a fast hub."""

from __future__ import annotations

import pytest

import tekton_site.sweeper
from runs import event_hub
from runs.models import Run, RunEvent
from tests.factories import RunFactory

# test_consumers imports tekton_site.asgi, which in embedded mode starts the stale-stage
# sweeper in this process: a thread that would sweep the test database under every later
# test. The sweeper has its own tests; here the ASGI application is what is tested.
tekton_site.sweeper.sweeper_start = lambda *args, **kwargs: None


@pytest.fixture(autouse=True)
def streams_urls(settings):
    settings.ROOT_URLCONF = "tests.streams.urls"


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch):
    # The hub's safety-net poll, shortened so tests of dropped hints stay fast.
    monkeypatch.setattr(event_hub, "POLL_SECONDS", 0.05)


@pytest.fixture
def make_run():
    """A run owned by `owner` with events of the given kinds (seq 1..n)."""

    def make(owner, kinds: list[str], status: str = Run.Status.RUNNING) -> Run:
        run = RunFactory(owner=owner, status=status, with_stages=False)
        for seq, kind in enumerate(kinds, start=1):
            RunEvent.objects.create(run=run, seq=seq, kind=kind, stage="plan", payload={"n": seq})
        Run.objects.filter(pk=run.pk).update(event_seq=len(kinds))
        run.refresh_from_db()
        return run

    return make


@pytest.fixture
def token_for():
    from accounts.services import token_create

    def make(user) -> str:
        return token_create(user=user, name="streams-tests")[1]

    return make
