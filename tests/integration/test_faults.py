"""Runs that survive faults, with real processes: Celery workers over PostgreSQL and Redis,
and a model server (the fake, through the official SDKs) that answers a fifth of its calls
with a fault."""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.fakes.diamond import DiamondResponder
from tests.fakes.faults import NEVER_RETRIED, TRANSIENT, FaultyResponder
from tests.fakes.llm_server import FakeLlmServer
from tests.integration.harness import Services, Worker, manage, wait_for
from tests.integration.test_celery_runs import (
    _assert_artifacts_once_and_intact,
    _assert_events_gapless,
    _events,
    _stages,
)

pytestmark = pytest.mark.integration

ENDED = ("succeeded", "blocked", "failed", "cancelled")
# Twenty short runs (plan and research, an opening round and one more); two of them meet a
# request error on their first call, which nothing may retry.
REFUSED = {3: "401", 11: "400"}
GOALS = [
    f"Harden greet, run {i}" + (f" [fault:{REFUSED[i]}]" if i in REFUSED else "") for i in range(20)
]
KEY_ENV = "FAKE_ANTHROPIC_API_KEY"
# Every model of the default profile goes to the fake server: the Anthropic ones through
# the anthropic SDK, the rest (the plan proponent is openai/gpt-4o) through the openai one.
LLM_ENV = {
    "TEKTON_LLM_BACKEND": "auto",
    KEY_ENV: "sk-ant-fake-0123456789",
    # A "timeout" fault keeps the client waiting 4 s; the call gives up after 3 s. (At
    # 1.5 s the fake server, answering the first sixty calls at once on a busy machine,
    # was sometimes slower than that with a 401: the client never saw it, and retried.)
    "TEKTON_LLM_TIMEOUT_SECONDS": "3",
}


def _run_of(raw: str) -> str:
    """Which of GOALS a request body belongs to ("" when it names none)."""
    found = re.search(r"Harden greet, run (\d+)", raw)
    return found.group(1) if found else ""


def _profile(services: Services, server: FakeLlmServer, name: str) -> str:
    routes = [
        {
            "match": "anthropic/*",
            "backend": "anthropic",
            "key_env": KEY_ENV,
            "base_url": server.anthropic_base_url,
            "strip_prefix": True,
        },
        {"match": "*/*", "backend": "openai", "base_url": server.openai_base_url},
    ]
    code = (
        "from config_profiles.models import Profile\n"
        "from config_profiles.services import profile_copy, profile_update\n"
        f"p = profile_copy(profile=Profile.objects.get(name='diamond-v5'), name={name!r})\n"
        f"profile_update(profile=p, data={{'rounds': 1, 'routes': {routes!r}}})\n"
    )
    done = manage(["shell", "-c", code], env={**services.env, **LLM_ENV}, timeout=60)
    assert done.returncode == 0, done.stderr
    return name


def _runs_create(
    services: Services, repo: Path, profile: str, goals: list[str], stage_to: str
) -> list[int]:
    """A run per goal, created (and dispatched) by one process as the API would: their ids."""
    code = (
        "import json\n"
        "from runs.services import run_create\n"
        f"goals = {goals!r}\n"
        f"ids = [run_create(goal=g, repo_path={str(repo)!r}, profile_name={profile!r}, "
        f"stage_to={stage_to!r}).pk for g in goals]\n"
        "print(json.dumps(ids))\n"
    )
    done = manage(["shell", "-c", code], env={**services.env, **LLM_ENV}, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ended(services: Services, ids: list[int]) -> list[dict]:
    rows = services.query(
        "SELECT id, status, reason FROM runs_run WHERE id = ANY(%s) ORDER BY id", (ids,)
    )
    return rows if all(r["status"] in ENDED for r in rows) else []


def test_twenty_runs_on_workers_survive_a_fifth_of_provider_calls_failing(
    services, git_repo, tmp_path
):
    responder = FaultyResponder(
        DiamondResponder(""), seed=9, retry_after_s=1.0, timeout_s=4.0, label=_run_of
    )
    server = FakeLlmServer(responder=responder).start()
    # One worker holds all twenty runs' stages in its threads; it starts while the
    # profile is made (a worker's start is most of this test's time).
    worker = Worker(
        env=services.env,
        queue=services.queue,
        log_path=tmp_path / "worker.log",
        concurrency=20,
        extra_env=LLM_ENV,
    )
    try:
        profile = _profile(services, server, f"faulty-{uuid.uuid4().hex[:6]}")
        worker.wait_ready(timeout=60)
        ids = _runs_create(services, git_repo, profile, GOALS, stage_to="research")
        try:
            runs = wait_for(
                lambda: _ended(services, ids), timeout=150, interval=0.5, what="20 runs to end"
            )
        except TimeoutError as exc:
            left = services.query(
                "SELECT id, status FROM runs_run WHERE id = ANY(%s) AND status <> ALL(%s)",
                (ids, list(ENDED)),
            )
            raise AssertionError(f"{exc}: {left}; faults {responder.faults()}") from None
    finally:
        worker.stop()
        server.stop()

    faults = responder.faults()
    statuses = Counter(r["status"] for r in runs)
    print(f"\n{len(responder.log)} calls, faults {dict(faults)}, runs {dict(statuses)}")
    assert all(faults[kind] > 0 for kind in TRANSIENT), faults
    assert all(faults[code] == 1 for code in NEVER_RETRIED), faults

    # Every run ends, and one that did not succeed says why in a line, never a traceback.
    for i, run in enumerate(runs):
        assert run["status"] in ("succeeded", "blocked", "failed"), run
        if run["status"] != "succeeded":
            assert run["reason"].strip() and "Traceback" not in run["reason"], run
        if i in REFUSED:
            assert run["status"] == "failed", run
            assert "plan failed after 1 attempt: Provider" in run["reason"], run
            assert f"HTTP {REFUSED[i]}" in run["reason"], run
    # The transient faults cost retries, not runs (each call has four tries, each stage
    # three attempts): nearly every other run succeeds.
    assert statuses["succeeded"] >= len(runs) - len(REFUSED) - 2, runs

    # A stage attempt that fails cancels its other calls, and a call cancelled while the
    # server's 429 was on its way never saw the retry-after: the stage's next attempt
    # sends that request again without waiting, which only a run with a retried stage may.
    rerun = {
        str(i)
        for i, run in enumerate(runs)
        if any(e["kind"] == "stage.retried" for e in _events(services, run["id"]))
    }
    retried: Counter[str] = Counter()
    waited = 0
    for calls in responder.by_key().values():
        for first, then in itertools.pairwise(calls):
            # Never sent again after a 400 or a 401, and after a 429 not before its
            # retry-after. (The same request after a success is a stage's next attempt,
            # which sends its first calls again: the attempt is not in the body.)
            assert first.fault not in NEVER_RETRIED, (first, then)
            if first.fault:
                retried[first.fault] += 1
            if first.retry_after is not None:
                if then.at - first.at >= first.retry_after:
                    waited += 1
                else:
                    assert first.label in rerun, (first, then, sorted(rerun))
    assert all(retried[kind] > 0 for kind in TRANSIENT), retried
    print(f"{len(rerun)} runs retried a stage; {waited} retries waited out a 429")
    assert waited > 0, "no 429 was followed by its retry"

    for run in runs:
        events = _events(services, run["id"])
        _assert_events_gapless(events)
        assert events[-1]["kind"] in ("run.finished", "run.failed"), events[-1]
        if run["status"] == "succeeded":
            _assert_artifacts_once_and_intact(services, run["id"])
            assert {s["status"] for s in _stages(services, run["id"]).values()} == {"succeeded"}
