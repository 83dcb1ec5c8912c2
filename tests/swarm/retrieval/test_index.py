"""Indexing and code search against a real Milvus Lite (in process, one per module)."""

from __future__ import annotations

import pytest

from swarm.retrieval import Retrieval, RetrievalConfig, RetrievalError
from tests.swarm.conftest import git
from tests.swarm.retrieval.conftest import TOPIC_QUERIES, TOPICS, commit_all, openai_config


def _paths(result) -> list[str]:
    return [h.path for h in result.hits]


def test_indexing_a_commit_stores_every_text_file_with_line_ranges(retrieval, topic_repo):
    progress: list[tuple[int, int, str]] = []
    report = retrieval.index_commit(
        repo="topics", path=topic_repo, progress=lambda d, t, p: progress.append((d, t, p))
    )
    assert report.commit == git(topic_repo, "rev-parse", "HEAD").strip()
    assert report.files == report.embedded_files == len(TOPICS)
    assert report.chunks == report.chunks_added > 0
    assert progress[0] == (0, len(TOPICS), "") and progress[-1][:2] == (len(TOPICS), len(TOPICS))
    assert {p for _, _, p in progress[1:]} == set(TOPICS)
    assert retrieval.is_indexed(repo="topics", commit=report.commit)

    hit = retrieval.search_code(repo="topics", commit=report.commit, query="token_revoke").hits[0]
    lines = TOPICS["auth/tokens.py"].split("\n")
    assert hit.path == "auth/tokens.py" and hit.language == "Python"
    assert hit.text == "\n".join(lines[hit.start_line - 1 : hit.end_line])
    assert "token_revoke" in hit.symbol

    again = retrieval.index_commit(repo="topics", path=topic_repo)
    assert again.already_indexed and again.embedded_files == 0 and again.chunks == report.chunks


def test_a_changed_file_is_the_only_one_embedded_again(retrieval, topic_repo):
    first = retrieval.index_commit(repo="topics", path=topic_repo)
    (topic_repo / "util" / "retry.go").write_text(
        TOPICS["util/retry.go"].replace("exponential backoff", "jittered exponential backoff")
    )
    (topic_repo / "notes.txt").write_text("")  # an empty file: nothing to embed, ever
    second_sha = commit_all(topic_repo, "jitter")
    second = retrieval.index_commit(repo="topics", path=topic_repo, commit=second_sha)
    assert second.embedded_files == 1 and second.reused_files == len(TOPICS) - 1
    assert second.chunks_added == 1 and second.skipped == {"empty": 1}
    assert second.chunks == first.chunks

    # Each commit sees its own version of the file.
    old = retrieval.search_code(repo="topics", commit=first.commit, query="jittered backoff")
    new = retrieval.search_code(repo="topics", commit=second_sha, query="jittered backoff")
    assert "jittered" not in " ".join(h.text for h in old.hits)
    assert new.hits[0].path == "util/retry.go" and "jittered" in new.hits[0].text

    git(topic_repo, "commit", "-q", "--allow-empty", "-m", "nothing changed")
    third = retrieval.index_commit(repo="topics", path=topic_repo)
    assert third.embedded_files == 0 and third.chunks_added == 0 and third.skipped == {"empty": 1}


def test_secrets_never_reach_the_index(retrieval, topic_repo):
    (topic_repo / ".env").write_text("STRIPE_KEY=sk_live_abcdefghijklmnop\n")
    (topic_repo / "keys").mkdir()
    (topic_repo / "keys" / "deploy.pem").write_text("-----BEGIN PRIVATE KEY-----\nabc\n")
    (topic_repo / "app.py").write_text(
        'OPENAI_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz123456"\n\n'
        "def call_model():\n    return OPENAI_KEY\n"
    )
    sha = commit_all(topic_repo, "secrets")
    report = retrieval.index_commit(repo="topics", path=topic_repo)
    assert report.skipped == {"secret": 2}
    stored = retrieval.store.query("chunks", 'path != ""', ["path", "content"])
    assert {r["path"] for r in stored}.isdisjoint({".env", "keys/deploy.pem"})
    app = next(r["content"] for r in stored if r["path"] == "app.py")
    assert "sk-proj-" not in app and "[API_KEY#1]" in app
    found = retrieval.search_code(
        repo="topics", commit=sha, query="STRIPE_KEY sk_live_abcdefghijklmnop"
    )
    assert ".env" not in _paths(found)


def test_hybrid_search_finds_the_file_that_answers_each_question(retrieval, topic_repo):
    sha = retrieval.index_commit(repo="topics", path=topic_repo).commit
    for query, expected in TOPIC_QUERIES.items():
        result = retrieval.search_code(repo="topics", commit=sha, query=query, k=3)
        assert result.warning is None
        assert _paths(result)[0] == expected, (query, _paths(result))
        assert result.hits[0].source == "hybrid"
        assert result.hits == sorted(result.hits, key=lambda h: -h.score)
    # Each side alone ranks too: BM25 on an exact identifier, dense on a paraphrase.
    bm25 = retrieval.search_code(repo="topics", commit=sha, query="presigned_url", mode="bm25")
    assert _paths(bm25)[0] == "storage/s3.py" and bm25.hits[0].source == "bm25"
    dense = retrieval.search_code(
        repo="topics", commit=sha, query="undo a deployment to the earlier image", mode="dense"
    )
    assert _paths(dense)[0] == "docs/deploy.md" and dense.hits[0].source == "dense"


def test_search_is_filtered_by_repository(retrieval, topic_repo, tmp_path):
    from tests.swarm.conftest import make_repo

    other = make_repo(tmp_path / "other", {"tokens.py": "def token_revoke():\n    pass\n"})
    retrieval.index_commit(repo="topics", path=topic_repo)
    sha = retrieval.index_commit(repo="other", path=other).commit
    result = retrieval.search_code(repo="other", commit=sha, query="revoke an api token")
    assert _paths(result) == ["tokens.py"]


def test_code_context_packs_the_best_chunks_into_the_budget(retrieval, topic_repo):
    sha = retrieval.index_commit(repo="topics", path=topic_repo).commit
    queries = ["Add coupon codes to invoices", "T1: discount the subtotal", "T2: tax on the total"]
    wide = retrieval.code_context(repo="topics", commit=sha, queries=queries, token_budget=100_000)
    assert wide.hits[0].path == "billing/invoice.py"
    tight = retrieval.code_context(repo="topics", commit=sha, queries=queries, token_budget=150)
    assert 0 < tight.tokens <= 150 and len(tight.hits) < len(wide.hits)
    rendered = tight.render()
    assert f"{tight.hits[0].path}:{tight.hits[0].start_line}-{tight.hits[0].end_line}" in rendered
    assert tight.as_dict()["hits"][0]["path"] == tight.hits[0].path
    assert (
        retrieval.code_context(repo="topics", commit=sha, queries=queries, token_budget=0).hits
        == []
    )
    with pytest.raises(RetrievalError):
        retrieval.code_context(repo="topics", commit=sha, queries=["  "], token_budget=100)


def test_a_commit_not_indexed_yet_searches_the_newest_indexed_one(retrieval, topic_repo):
    first = retrieval.index_commit(repo="topics", path=topic_repo).commit
    (topic_repo / "new.py").write_text("def brand_new():\n    pass\n")
    second = commit_all(topic_repo, "new")
    result = retrieval.search_code(repo="topics", commit=second, query="revoke an api token")
    assert result.commit == first and result.hits
    assert (
        result.warning == f"commit {second[:12]} is not indexed yet; searched {first[:12]} instead"
    )
    nothing = retrieval.search_code(repo="never-indexed", commit=second, query="x")
    assert nothing.hits == [] and nothing.warning == "never-indexed is not indexed yet"


def test_namespaces_on_one_milvus_never_see_each_other(lite_uri, topic_repo):
    alpha = Retrieval(RetrievalConfig(namespace="team-alpha", milvus_uri=lite_uri))
    beta = Retrieval(RetrievalConfig(namespace="team_alpha", milvus_uri=lite_uri))
    sha = alpha.index_commit(repo="topics", path=topic_repo).commit
    alpha.lesson_add(
        repo="topics", text="review wants tests", run_id=1, stage="review", kind="review"
    )

    assert beta.search_code(repo="topics", commit=sha, query="revoke an api token").hits == []
    assert beta.lesson_search(repo="topics", query="tests").hits == []
    assert not beta.is_indexed(repo="topics", commit=sha)
    beta.index_commit(repo="topics", path=topic_repo)
    assert beta.status().repos[0].lessons == 0
    assert alpha.status().repos[0].lessons == 1
    assert set(alpha.store.collections()).isdisjoint(beta.store.collections())
    with pytest.raises(RetrievalError, match="namespace"):
        Retrieval(RetrievalConfig(namespace="bad name!", milvus_uri=lite_uri))


def test_a_new_embedding_model_rebuilds_the_index_instead_of_mixing(
    lite_uri, namespace, topic_repo, fake_llm, monkeypatch
):
    monkeypatch.setenv("TEKTON_TEST_EMBED_KEY", "k")
    remote = Retrieval(
        RetrievalConfig(namespace=namespace, milvus_uri=lite_uri, embedding=openai_config(fake_llm))
    )
    sha = remote.index_commit(repo="topics", path=topic_repo).commit
    remote.lesson_add(
        repo="topics",
        text="review asked for a changelog entry",
        run_id=3,
        stage="review",
        kind="review",
    )
    assert remote.status().index_dim == 32

    local = Retrieval(RetrievalConfig(namespace=namespace, milvus_uri=lite_uri))
    assert (
        local.search_code(repo="topics", commit=sha, query="invoice").warning
        == "topics is not indexed yet"
    )
    status = local.status()
    assert (status.index_model, status.index_dim) == ("wordllama/l2_supercat-256", 256)
    # Lessons exist nowhere else: they were re-embedded, not dropped.
    hits = local.lesson_search(repo="topics", query="changelog entry").hits
    assert [h.text for h in hits] == ["review asked for a changelog entry"]
    report = local.index_commit(repo="topics", path=topic_repo)
    assert report.embedded_files == len(TOPICS) and not report.already_indexed


def test_status_reports_the_index_per_repository(retrieval, topic_repo):
    empty = retrieval.status(repos=["topics"])
    assert empty.reachable and empty.error is None and empty.embedding_error is None
    assert empty.repos[0].last_commit is None and empty.collections == []
    report = retrieval.index_commit(repo="topics", path=topic_repo)
    retrieval.lesson_add(repo="topics", text="a lesson", run_id=1, stage="code", kind="retry_note")
    status = retrieval.status()
    assert status.ok and status.mode == "milvus-lite (in process)"
    assert sorted(status.collections) == sorted(retrieval.store.names.values())
    assert status.embedding_model == "wordllama/l2_supercat-256" and status.embedding_dim == 256
    (repo,) = status.repos
    assert (repo.repo, repo.last_commit, repo.files, repo.chunks) == (
        "topics", report.commit, report.files, report.chunks,
    )  # fmt: skip
    assert repo.chunk_rows == report.chunks and repo.lessons == 1 and repo.commits_indexed == 1
    assert status.as_dict()["repos"][0]["repo"] == "topics"


def test_bad_input_is_a_clear_error(retrieval, tmp_path, topic_repo):
    with pytest.raises(RetrievalError, match="not a directory"):
        retrieval.index_commit(repo="x", path=tmp_path / "missing")
    with pytest.raises(RetrievalError, match="not a git repository"):
        retrieval.index_commit(repo="x", path=tmp_path)
    with pytest.raises(RetrievalError, match="unknown commit 'nope'"):
        retrieval.index_commit(repo="x", path=topic_repo, commit="nope")
    with pytest.raises(RetrievalError, match="empty"):
        retrieval.search_code(repo="x", commit=None, query="   ")
    with pytest.raises(RetrievalError, match="mode"):
        retrieval.search_code(repo="x", commit=None, query="q", mode="fuzzy")
