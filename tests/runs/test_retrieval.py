"""Retrieval wired into runs, on a real Milvus Lite (one file for the module, indexed once):
what stages are given and recorded, lessons written when events happen and found by
meaning within what the run's owner may see, indexing on run start, degradation when the
index is down, and `tekton index` / `tekton search`."""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from pathlib import Path

import pytest

from runs import events
from runs.dispatch import run_inline
from runs.models import RunEvent
from runs.retrieval import retrieval_get, stage_context_build
from swarm.retrieval import Retrieval, RetrievalConfig
from tests.cli import tekton
from tests.factories import RunFactory, UserFactory, frozen_config
from tests.swarm.conftest import git, make_repo
from tests.swarm.retrieval.conftest import TOPICS

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """The topics repository and a Milvus Lite file holding its HEAD, in namespace `ns`."""
    root = tmp_path_factory.mktemp("retrieval")
    repo = make_repo(root / "repos" / "topics", TOPICS)
    uri = str(root / "milvus.db")
    ns = f"t{uuid.uuid4().hex[:8]}"
    r = Retrieval(RetrievalConfig(namespace=ns, milvus_uri=uri))
    head = git(repo, "rev-parse", "HEAD").strip()
    r.index_commit(repo=str(repo), path=repo, commit=head)
    r.close()
    yield {"repo": repo, "uri": uri, "ns": ns, "head": head}
    from milvus_lite import server_manager_instance

    server_manager_instance.release_server(uri)


@pytest.fixture
def on(tekton_settings, indexed):
    tekton_settings.TEKTON_RETRIEVAL = True
    tekton_settings.MILVUS_URI = indexed["uri"]
    tekton_settings.TEKTON_MILVUS_NAMESPACE = indexed["ns"]
    tekton_settings.TEKTON_REPO_ROOTS = [indexed["repo"].parent]
    return tekton_settings


def _run(indexed, stages=("review",), **kw):
    return RunFactory(
        repo_path=str(indexed["repo"]),
        base_commit=indexed["head"],
        stage_from=stages[0],
        stage_to=stages[-1],
        config=frozen_config(list(stages)),
        **kw,
    )


def test_a_code_facing_stage_gets_chunks_with_locations_and_the_run_records_them(
    on, indexed, fake_engine
):
    run = _run(indexed, goal="Revoke an API token when the user logs out")
    run_inline(run.pk)
    inp = fake_engine.calls[0][0]
    assert "auth/tokens.py:" in inp.code_context
    (event,) = RunEvent.objects.filter(run=run, kind="stage.context")
    assert event.stage == "review"
    chunks = event.payload["chunks"]
    assert chunks[0]["path"] == "auth/tokens.py"
    assert chunks[0]["start_line"] >= 1 and chunks[0]["score"] > 0
    assert event.payload["commit"] == indexed["head"]
    assert not RunEvent.objects.filter(run=run, kind="run.warning").exists()


def test_lessons_are_written_on_events_and_found_by_meaning_only_where_the_owner_may_see(
    on, indexed, django_capture_on_commit_callbacks
):
    on.TEKTON_MILVUS_NAMESPACE = f"l{uuid.uuid4().hex[:8]}"  # lessons of this test alone
    alice, bob = UserFactory(), UserFactory()
    earlier = _run(indexed, goal="Add coupon codes to invoices", owner=alice)
    with django_capture_on_commit_callbacks(execute=True):
        events.event_record(
            run_id=earlier.pk,
            kind="stage.blocked",
            stage="review",
            payload={"reason": "the discount can make an invoice total negative"},
        )
    with django_capture_on_commit_callbacks(execute=True):
        events.event_record(
            run_id=earlier.pk,
            kind="stage.retried",
            stage="review",
            payload={"note": "clamp the discounted total at zero", "by": "alice"},
        )
    mine = _run(indexed, goal="Apply a percentage discount to an invoice", owner=alice)
    ctx = stage_context_build(mine, "review", {})
    assert any("clamp the discounted total at zero" in x.text for x in ctx.lessons)
    assert {row["source"] for row in ctx.lesson_rows} == {f"run {earlier.pk} / review"}
    # Another user's stages never see alice's text; staff see every run's.
    theirs = _run(indexed, goal="Apply a percentage discount to an invoice", owner=bob)
    assert stage_context_build(theirs, "review", {}).lessons == []
    staff = _run(indexed, goal="discount", owner=UserFactory(is_staff=True))
    assert stage_context_build(staff, "review", {}).lessons


def test_a_run_on_an_unindexed_commit_goes_on_with_a_warning_and_gets_indexed(
    on, indexed, tmp_path, fake_engine, django_capture_on_commit_callbacks
):
    on.TEKTON_MILVUS_NAMESPACE = f"i{uuid.uuid4().hex[:8]}"  # nothing indexed here yet
    run = _run(indexed, goal="Upload a file to the bucket")
    with django_capture_on_commit_callbacks(execute=True):
        events.event_record(run_id=run.pk, kind="run.started", payload={})
    (warning,) = RunEvent.objects.filter(run=run, kind="run.warning")
    assert "not indexed yet" in warning.payload["message"]
    assert retrieval_get().is_indexed(repo=str(indexed["repo"]), commit=indexed["head"])


def test_an_index_that_is_down_degrades_to_nothing_with_a_warning(on, indexed, fake_engine):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    on.MILVUS_URI = f"http://127.0.0.1:{port}"
    on.TEKTON_MILVUS_TIMEOUT_S = 1.0
    run = _run(indexed, goal="Revoke an API token")
    run_inline(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert fake_engine.calls[0][0].code_context == ""
    warnings = RunEvent.objects.filter(run=run, kind="run.warning")
    assert warnings.count() == 1
    assert "went on without" in warnings.get().payload["message"]


def test_tekton_index_and_search(on, indexed, tmp_path):
    code, out, err = tekton("index", str(indexed["repo"]))
    assert code == 0, err
    assert "already indexed" in out
    code, out, err = tekton(
        "search", "retry with exponential backoff", "--repo", str(indexed["repo"]), "--json"
    )
    assert code == 0, err
    found = json.loads(out)
    assert found["chunks"][0]["path"] == "util/retry.go"
    assert found["chunks"][0]["location"].startswith("util/retry.go:")

    outside = make_repo(tmp_path / "elsewhere", {"a.py": "x = 1\n"})
    code, _, err = tekton("index", str(outside))
    assert code == 2
    assert "outside the allowed roots" in err and "\n" not in err.strip()
    plain = indexed["repo"].parent / "plain"
    plain.mkdir(exist_ok=True)
    code, _, err = tekton("index", str(plain))
    assert (code, "is not a git repository" in err) == (2, True)
    shutil.rmtree(plain)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    on.MILVUS_URI = f"http://127.0.0.1:{port}"
    on.TEKTON_MILVUS_TIMEOUT_S = 1.0
    code, _, err = tekton("index", str(indexed["repo"]))
    assert code == 1
    assert err.startswith("error: ") and "--debug" not in err
    assert Path(indexed["repo"]).exists()


def test_the_search_code_tool_answers_from_the_index_of_the_runs_commit(on, indexed):
    from runs.retrieval import code_searcher
    from swarm.providers.base import ToolCall
    from swarm.tools import StageTools

    run = _run(indexed, stages=("code",))
    tools = StageTools(workspace=indexed["repo"], stage="code", index_search=code_searcher(run))
    result = tools.turn("proponent").call(
        ToolCall(
            id="1", name="search_code", arguments={"query": "presigned download link", "limit": 3}
        )
    )
    assert not result.is_error, result.content
    first = result.content.split("\n\n")[1]
    assert first.startswith("storage/s3.py:") and " score " in first
    assert result.summary.startswith("3 passages") or result.summary.startswith("2 passages")


def test_the_api_and_the_repository_page_search_the_index_and_the_run_page_shows_context(
    on, indexed, client, fake_engine
):
    user = UserFactory()
    client.force_login(user)
    repo = str(indexed["repo"])
    answer = client.get("/api/search/", {"q": "how do I roll back a bad release", "repo": repo})
    assert answer.status_code == 200, answer.content
    found = answer.json()
    assert found["chunks"][0]["path"] == "docs/deploy.md"
    assert {"start_line", "end_line", "score", "location"} <= set(found["chunks"][0])
    assert found["commit"] == indexed["head"] and found["warning"] is None
    outside = client.get("/api/search/", {"q": "x", "repo": "/etc"})
    assert outside.status_code == 400

    run = _run(indexed, goal="Throttle clients sending too many requests", owner=user)
    run_inline(run.pk)
    page = client.get(f"/runs/{run.pk}/?stage=review").content.decode()
    assert 'id="context"' in page and "web/router.js:" in page
    repo_page = client.get("/repo/", {"repo": repo, "q": "database connection pool size"})
    html = repo_page.content.decode()
    assert 'role="search"' in html
    assert "config/settings.toml:" in html


def test_the_checks_report_the_index_per_repository(on, indexed):
    from syschecks.services import checks_run

    on.MILVUS_TOKEN = "root:tok-sekret-42"  # Milvus Lite ignores it; nothing may show it
    results = {r.id: r for r in checks_run(only=["milvus"])}
    assert "tok-sekret" not in repr(results)
    main = results["milvus"]
    assert main.status == "ok", main.detail
    assert "reachable" in main.detail and "wordllama" in main.detail
    assert f"namespace {indexed['ns']}" in main.detail
    repo = results[f"milvus.repo:{indexed['repo']}"]
    assert f"last indexed commit {indexed['head'][:12]}" in repo.detail
    assert "chunks" in repo.detail and "lesson" in repo.detail


def test_each_event_teaches_its_lesson_and_a_resolution_rewrites_the_blocked_one():
    from runs.retrieval import lesson_of_event
    from tests.factories import ArtifactFactory

    run = RunFactory()

    def rec(kind, stage="review", **payload):
        return events.event_record(run_id=run.pk, kind=kind, stage=stage, payload=payload)

    blocked = rec("stage.blocked", reason="no test covers the refund path")
    approved = lesson_of_event(rec("stage.approved", status="succeeded", by="ada"))
    assert approved == {
        "text": "Stage review blocked: no test covers the refund path. A person approved it anyway.",
        "stage": "review", "kind": "blocked", "outcome": "approved", "key": f"event:{blocked.pk}",
    }  # fmt: skip
    assert lesson_of_event(rec("stage.retried", reason="timeout", automatic=True)) is None
    noted = lesson_of_event(rec("stage.retried", note="add a refund test first"))
    assert (noted["kind"], noted["outcome"]) == ("retry_note", "retried")
    assert (
        "no test covers the refund path" in noted["text"] and "add a refund test" in noted["text"]
    )
    aborted = lesson_of_event(
        rec("run.cancelled", stage="", reason="aborted by ada at blocked stage review")
    )
    assert (aborted["outcome"], aborted["key"]) == ("aborted", f"event:{blocked.pk}")

    ArtifactFactory(
        run=run,
        stage="review",
        content={"status": "revise", "issues": [{"title": "refunds are not idempotent"}]},
    )
    review = lesson_of_event(rec("stage.finished", status="succeeded"))
    assert review["kind"] == "review" and "refunds are not idempotent" in review["text"]
    ArtifactFactory(
        run=run,
        stage="test_debug",
        content={"status": "ok", "evidence": {"newly_failing": ["tests/test_pay.py::test_refund"]}},
    )
    failing = lesson_of_event(rec("stage.finished", stage="test_debug", status="succeeded"))
    assert failing["kind"] == "test_fix" and "tests/test_pay.py::test_refund" in failing["text"]
    assert lesson_of_event(rec("stage.finished", stage="plan", status="succeeded")) is None


def test_tests_that_a_revised_change_fixed_teach_what_fixed_them():
    from runs.models import TestRunRecord
    from runs.retrieval import lesson_of_event
    from tests.factories import ArtifactFactory

    run = RunFactory()

    def record(kind, **outcomes):
        TestRunRecord.objects.create(
            run=run, stage="test_debug", kind=kind, repo_path=run.repo_path, commit="c" * 40,
            command_key="k", data={"outcomes": outcomes},
        )  # fmt: skip

    def finished():
        return lesson_of_event(
            events.event_record(
                run_id=run.pk, kind="stage.finished", stage="test_debug", payload={}
            )
        )

    ArtifactFactory(run=run, stage="test_debug", content={"status": "ok", "evidence": {}})
    ArtifactFactory(run=run, stage="code", content={"files_changed": ["shop/pay.py"]})
    record("base", t_refund="passed", t_old="failed")
    record("branch", t_refund="failed", t_old="failed")
    assert finished() is None  # one branch run: nothing was fixed yet
    events.event_record(
        run_id=run.pk, kind="stage.retried", stage="code", payload={"note": "round half up"}
    )
    events.event_record(
        run_id=run.pk, kind="stage.retried", stage="code", payload={"automatic": True, "note": "x"}
    )
    record("branch", t_refund="passed", t_old="failed")
    lesson = finished()
    assert (lesson["kind"], lesson["outcome"]) == ("test_fix", "fixed")
    assert "t_refund" in lesson["text"] and "t_old" not in lesson["text"]  # failed on base too
    # The automatic retry's note is no person's: only the one given is named.
    assert "retry note: round half up; the change that passed touches shop/pay.py" in lesson["text"]
