"""Retrieval that cannot reach Milvus or its embedding model degrades to nothing, with a
warning, and never crashes a stage."""

from __future__ import annotations

import socket

import pytest

from swarm.retrieval import Retrieval, RetrievalConfig, RetrievalUnavailable
from tests.fakes.llm_server import status
from tests.swarm.retrieval.conftest import openai_config


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def down(tmp_path) -> Retrieval:
    uri = f"http://tekton:hunter2-secret@127.0.0.1:{_closed_port()}"
    return Retrieval(RetrievalConfig(milvus_uri=uri, milvus_token="tok-secret", timeout_s=2))


def test_reads_for_stages_return_nothing_and_a_warning_when_milvus_is_down(down):
    code = down.search_code(repo="r", commit="abc", query="where are tokens revoked")
    context = down.code_context(repo="r", commit="abc", queries=["goal"], token_budget=500)
    lessons = down.lesson_search(repo="r", query="goal", stage="code")
    warnings: list[str] = []
    provided = down.lessons_provider(visible_run_ids=None, on_warning=warnings.append).lessons_for(
        goal="g", stage="code", repo_path="r"
    )
    for result in (code, context, lessons):
        assert result.hits == []
        assert result.warning.startswith("Milvus unavailable")
        assert "hunter2" not in result.warning and "tok-secret" not in result.warning
    assert provided == [] and len(warnings) == 1


def test_writes_and_indexing_raise_unavailable_when_milvus_is_down(down, topic_repo):
    with pytest.raises(RetrievalUnavailable, match="Milvus unavailable"):
        down.index_commit(repo="r", path=topic_repo)
    with pytest.raises(RetrievalUnavailable):
        down.lesson_add(repo="r", text="t", run_id=1, stage="code", kind="blocked")
    status_ = down.status(repos=["r"])
    assert not status_.reachable and not status_.ok and status_.repos == []
    assert status_.error.startswith("Milvus unavailable") and "hunter2" not in status_.uri
    assert status_.embedding_error is None  # the offline model itself is fine


def test_a_milvus_that_is_down_is_not_asked_again_at_once(down, monkeypatch):
    real_connect = down.store._connect
    calls: list[int] = []

    def counting_connect():
        calls.append(1)
        return real_connect()

    monkeypatch.setattr(down.store, "_connect", counting_connect)
    first = down.search_code(repo="r", commit=None, query="q")
    second = down.search_code(repo="r", commit=None, query="q")
    assert calls == [1] and second.warning == first.warning
    down.store.retry_after_s = 0
    down.store._down = (0.0, "")
    down.search_code(repo="r", commit=None, query="q")
    assert calls == [1, 1]


def test_a_missing_embedding_key_degrades_and_is_reported(
    lite_uri, namespace, fake_llm, monkeypatch
):
    monkeypatch.delenv("TEKTON_TEST_EMBED_KEY", raising=False)
    r = Retrieval(
        RetrievalConfig(namespace=namespace, milvus_uri=lite_uri, embedding=openai_config(fake_llm))
    )
    result = r.search_code(repo="r", commit=None, query="anything")
    assert result.hits == [] and "TEKTON_TEST_EMBED_KEY" in result.warning
    status_ = r.status()
    assert (
        status_.reachable and "TEKTON_TEST_EMBED_KEY" in status_.embedding_error and not status_.ok
    )
    assert fake_llm.requests == []


def test_a_failing_embedding_endpoint_degrades_lesson_search(
    lite_uri, namespace, fake_llm, monkeypatch
):
    monkeypatch.setenv("TEKTON_TEST_EMBED_KEY", "k")
    r = Retrieval(
        RetrievalConfig(namespace=namespace, milvus_uri=lite_uri, embedding=openai_config(fake_llm))
    )
    r.lesson_add(repo="r", text="review wanted docs", run_id=1, stage="review", kind="review")
    fake_llm.script(status(503))
    result = r.lesson_search(repo="r", query="docs")
    assert result.hits == [] and "answered 503" in result.warning
    assert [h.text for h in r.lesson_search(repo="r", query="docs").hits] == ["review wanted docs"]
