"""schemathesis over the whole OpenAPI schema: no server errors, no answer the schema does
not describe. Fixed seed; at least 1,000 generated cases in total."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, given
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode

from accounts.services import token_create
from config_profiles.services import profile_create
from prompts.services import prompt_invocation_create, prompt_invocation_finish
from runs.models import Run, StageRun
from tests.factories import RunFactory

SEED = 20240611
# Per operation and generation mode; the operations x (positive + negative) and a second
# positive pass on real run ids / profile names bring the total past 2,000. Generating
# cases, not serving them, is most of this test's time (py-spy: 44% in hypothesis's
# draws), so more examples buy little more than minutes.
EXAMPLES = 20
MIN_CASES = 1000

# Requests that match the schema but that the server must still refuse with a documented
# 400, because acceptance depends on the server's state, not on the request's shape: the
# repository must exist under TEKTON_REPO_ROOTS and be git (a searched one must be under
# them), a model needs a route, a fork starts at a stage its parent has finished up to, a
# profile name must be free, a note must not be only spaces, a check id must be
# registered, a cursor must be one the server issued, a hook URL must resolve to an allowed
# address, a prompt must not be only spaces. For these operations only, 400 joins the
# statuses a schema-valid request may get; every check stays on, and a 5xx or an
# undocumented answer still fails.
STATE_DEPENDENT = [
    "runs_list",
    "runs_create",
    "runs_fork",
    "runs_stage_retry",
    "profiles_create",
    "profiles_update",
    "profiles_partial_update",
    "system_checks_run",
    "hooks_create",
    "search",
    "prompts_create",
]
CONFIG = "\n".join(
    f"""
[[operations]]
include-operation-id = "{op}"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "400", "401", "403", "404", "409", "429",
]
"""
    for op in STATE_DEPENDENT
)


@pytest.fixture
def fuzz_settings(settings):
    # Generous limits: the fuzzer creates many runs and must not hit 429 for that reason.
    settings.TEKTON_API_MAX_RUNS_IN_FLIGHT = 10**6
    settings.TEKTON_API_RUNS_PER_MINUTE = 10**6
    settings.ALLOWED_HOSTS = ["localhost", "testserver", "127.0.0.1"]
    # The test transport reads a stream to its end: keep each one short.
    settings.TEKTON_SSE_MAX_SECONDS = 0.2
    settings.TEKTON_SSE_HEARTBEAT_SECONDS = 0.1
    return settings


@pytest.fixture
def keep_test_connection():
    """The WSGI handler closes database connections at the end of each request, which
    would close the test's own transaction; Django's test client disconnects the same
    receivers."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


NOT_HERE: set[str] = set()


def operations(schema):
    for result in schema.get_all_operations():
        op = result.ok()
        if op.definition.raw.get("operationId") not in NOT_HERE:
            yield op


@pytest.mark.django_db
def test_the_api_keeps_to_its_schema(
    fuzz_settings, keep_test_connection, staff_user, git_repo, no_dispatch
):
    raw = token_create(user=staff_user, name="schemathesis")[1]
    headers = {"Authorization": f"Bearer {raw}"}
    run = RunFactory(owner=staff_user, repo_path=str(git_repo), status=Run.Status.BLOCKED)
    StageRun.objects.filter(run=run, stage="plan").update(status=StageRun.Status.BLOCKED)
    profile_create(data={"name": "scratch", "stage_models": {"default": "openai/gpt-4o"}})
    # A finished invocation: its detail and its event stream (which then ends at once).
    asked = prompt_invocation_create(agent="claude", prompt="hi", owner=staff_user)
    prompt_invocation_finish(invocation=asked, outcome={"outcome": "OK", "response": "hi"})

    app = get_wsgi_application()
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", app, config=SchemathesisConfig.from_str(CONFIG)
    )
    ops = list(operations(schema))
    assert len(ops) >= 15, [op.label for op in ops]

    total = 0

    def exercise(op, mode, **fixed):
        nonlocal total

        @hypothesis.seed(SEED)
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @given(case=op.as_strategy(generation_mode=mode, **fixed))
        def check(case):
            nonlocal total
            total += 1
            # Runs every enabled check; a failure raises and hypothesis reports it shrunk.
            case.call_and_validate(headers=headers)

        check()

    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            exercise(op, mode)
        params = {p.name for p in op.path_parameters}
        if "run_id" in params:
            fixed = {"run_id": run.pk}
            if "stage" in params:
                fixed["stage"] = "plan"
            exercise(op, GenerationMode.POSITIVE, path_parameters=fixed)
        elif "invocation_id" in params:
            exercise(op, GenerationMode.POSITIVE, path_parameters={"invocation_id": asked.pk})
        elif "name" in params and op.method.upper() != "DELETE":
            exercise(op, GenerationMode.POSITIVE, path_parameters={"name": "scratch"})

    by_id = {op.definition.raw.get("operationId"): op for op in ops}
    # Paths a person types that a fuzzer seldom draws: each is a documented 400, no 500.
    for repo in ("/tmp/" + "a" * 300, "x" * 5000, "/tmp/x\x00y", "/" + "/".join(["b" * 200] * 5)):
        for case in (
            by_id["runs_create"].Case(body={"goal": "g", "repo": repo}),
            by_id["prompts_create"].Case(body={"agent": "claude", "prompt": "hi", "repo": repo}),
            by_id["search"].Case(query={"q": "x", "repo": repo}),
        ):
            assert case.call_and_validate(headers=headers).status_code == 400, case.operation

    assert total >= MIN_CASES, f"only {total} cases generated"
    print(f"schemathesis: {total} cases over {len(ops)} operations")
