"""A stage asks whether the sandbox works; the probe behind it runs once a minute per
process, not once per stage (runs.stage_work.sandbox_state)."""

from __future__ import annotations

import pytest

from runs import stage_work


@pytest.fixture
def probes(monkeypatch):
    answers = []
    calls = []

    def probe():
        calls.append(1)
        return answers.pop(0)

    clock = [1000.0]
    monkeypatch.setattr(stage_work, "sandbox_probe", probe)
    monkeypatch.setattr(stage_work, "_probed", None)
    monkeypatch.setattr(stage_work, "_clock", lambda: clock[0])
    return answers, calls, clock


def test_a_working_sandbox_is_probed_once_a_minute(probes, settings):
    settings.TEKTON_SANDBOX = "bwrap"
    answers, calls, clock = probes
    answers += [(True, "bwrap works"), (True, "bwrap works again")]
    assert stage_work.sandbox_state() == (True, "bwrap works")
    clock[0] += 30
    assert stage_work.sandbox_state() == (True, "bwrap works")
    assert len(calls) == 1
    clock[0] += stage_work.PROBE_TTL_S
    assert stage_work.sandbox_state() == (True, "bwrap works again")
    assert len(calls) == 2


def test_a_failed_probe_is_tried_again_at_the_next_stage(probes, settings):
    settings.TEKTON_SANDBOX = "bwrap"
    answers, calls, _ = probes
    answers += [(False, "no bwrap binary"), (True, "bwrap works")]
    assert stage_work.sandbox_state() == (False, "no bwrap binary")
    assert stage_work.sandbox_state() == (True, "bwrap works")
    assert len(calls) == 2


def test_no_sandbox_asked_for_is_never_probed(probes, settings):
    settings.TEKTON_SANDBOX = "none"
    _, calls, _ = probes
    assert stage_work.sandbox_state() == (True, "")
    assert calls == []
