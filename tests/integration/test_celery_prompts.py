"""A prompt asked from the web, run by a real Celery worker over PostgreSQL and Redis
(issue 12): the worker claims it, answers it (offline) and records it redacted."""

from __future__ import annotations

import pytest

from tests.integration.harness import manage, wait_for

pytestmark = pytest.mark.integration

KEY = "sk-ant-api03-PLANTEDsecretKEY0123456789abcdef"
ASK = f"""
from django.contrib.auth import get_user_model
from prompts.services import prompt_invocation_request
user, _ = get_user_model().objects.get_or_create(username="it-prompts")
inv = prompt_invocation_request(by=user, agent="prompt", prompt="fix the bug, key {KEY}")
print(inv.pk)
"""


def test_a_queued_prompt_is_answered_by_a_worker(services, start_worker):
    start_worker()
    done = manage(["shell", "-c", ASK], env=services.env, timeout=60)
    assert done.returncode == 0, done.stderr
    pk = int(done.stdout.strip().splitlines()[-1])

    def finished():
        rows = services.query(
            "SELECT * FROM prompts_promptinvocation WHERE id = %s AND status IN ('ok', 'failed')",
            (pk,),
        )
        return rows[0] if rows else None

    row = wait_for(finished, timeout=60, what=f"prompt {pk} to finish")
    assert row["status"] == "ok", row["error"]
    assert (row["intent"], row["provider"]) == ("code", "offline")
    assert row["response"].startswith("[offline]")
    assert KEY not in row["prompt"] + row["response"]
    journal = services.data_dir / "memory" / "web" / "it-prompts" / "invocations"
    assert (journal / row["journal_id"] / "metadata.json").exists()
