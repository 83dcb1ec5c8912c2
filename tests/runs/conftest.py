from __future__ import annotations

import pytest

from tests.runs.fake_engine import FakeEngine


@pytest.fixture
def fake_engine(monkeypatch):
    """Replace the swarm engine inside runs.execution; configure via `.behaviour`."""
    engine = FakeEngine()
    monkeypatch.setattr("runs.execution.stage_run", engine)
    return engine
