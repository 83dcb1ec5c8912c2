from __future__ import annotations

import pytest

from tests.runs.fake_engine import FakeEngine


@pytest.fixture
def fake_engine(monkeypatch):
    """Replace the swarm engine inside runs.engine_bridge; configure via `.behaviour`."""
    engine = FakeEngine()
    monkeypatch.setattr("runs.engine_bridge.stage_run", engine)
    return engine
