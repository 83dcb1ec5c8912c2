"""The budget ledger on PostgreSQL: callers on separate connections racing for the last
remainder of a run's budget cannot overshoot it (the run row's lock serialises them)."""

from __future__ import annotations

import json

import pytest

from tests.integration.harness import Services, manage

pytestmark = pytest.mark.integration

# Eight threads, each with its own connection, reserve 300 tokens of a 1,000 budget at once.
RACE = """
import json, threading
from django.db import connection
from runs.budgets import budget_held, budget_reserve
from runs.models import Run, StageRun
from swarm.context import BudgetExceeded
run = Run.objects.create(goal="g", repo_path="/r", profile_name="p", stage_from="plan",
    stage_to="plan", config={"budget_tokens": 1000})
stage = StageRun.objects.create(run=run, stage="plan", position=1)
barrier, got, refused = threading.Barrier(8), [], []
def caller(i):
    try:
        barrier.wait()
        budget_reserve(run_id=run.pk, stage_run_id=stage.pk, claim=f"c{i}", role="skeptic",
            tokens=300, cost_usd=0.0)
        got.append(i)
    except BudgetExceeded:
        refused.append(i)
    finally:
        connection.close()
threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"got": len(got), "refused": len(refused), "held": budget_held(run.pk)[0]}))
"""


def test_concurrent_reservations_on_postgres_cannot_overshoot(services: Services):
    proc = manage(["shell", "-c", RACE], env=services.env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"got": 3, "refused": 5, "held": 900}
