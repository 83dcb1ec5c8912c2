from __future__ import annotations

import math
import socket

import pytest

from swarm.retrieval import EmbeddingConfig, RetrievalError, RetrievalUnavailable
from swarm.retrieval.embedders import OpenAIEmbedder, WordLlamaEmbedder, embedder_build
from tests.fakes.llm_server import ok, status
from tests.swarm.retrieval.conftest import openai_config


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_wordllama_loads_from_the_wheel_without_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the offline embedder tried to open a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(WordLlamaEmbedder, "_loaded", None)
    embedder = WordLlamaEmbedder()
    vectors = embedder.embed(
        ["revoke the user's api token", "invalidate an access token", "bake sourdough bread"]
    )
    assert embedder.dim == 256 and all(len(v) == 256 for v in vectors)
    assert all(math.isclose(_cos(v, v), 1.0, rel_tol=1e-4) for v in vectors)
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2])


def test_wordllama_keeps_the_order_of_texts_of_any_length():
    embedder = WordLlamaEmbedder()
    texts = ["a much longer text about parsing configuration files " * 20, "short", ""]
    together = embedder.embed(texts)
    alone = [embedder.embed([t])[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        assert _cos(a, b) == pytest.approx(1.0, abs=1e-4)


def test_openai_embedder_calls_the_endpoint_with_the_key_from_the_named_variable(fake_llm):
    embedder = embedder_build(openai_config(fake_llm), env={"TEKTON_TEST_EMBED_KEY": "sk-test-123"})
    vectors = embedder.embed(["alpha beta", "alpha beta", "gamma"])
    assert embedder.model == "openai/text-embedding-fake"
    assert embedder.dim == 32 and len(vectors) == 3
    assert _cos(vectors[0], vectors[1]) == pytest.approx(1.0)
    request = fake_llm.requests[-1]
    assert request.path == "/v1/embeddings"
    assert request.headers["authorization"] == "Bearer sk-test-123"
    assert request.body["model"] == "text-embedding-fake"
    assert request.body["input"] == ["alpha beta", "alpha beta", "gamma"]


def test_openai_embedder_batches_and_asks_for_dimensions(fake_llm):
    config = openai_config(fake_llm, dimensions=16, batch_size=2)
    embedder = embedder_build(config, env={"TEKTON_TEST_EMBED_KEY": "k"})
    assert len(embedder.embed(["a", "b", "c", "d", "e"])) == 5
    assert [len(r.body["input"]) for r in fake_llm.requests] == [2, 2, 1]
    assert all(r.body["dimensions"] == 16 for r in fake_llm.requests)
    assert embedder.dim == 16


def test_openai_embedder_without_its_key_is_unavailable(fake_llm):
    with pytest.raises(RetrievalUnavailable, match="TEKTON_TEST_EMBED_KEY"):
        embedder_build(openai_config(fake_llm), env={})


def test_openai_embedder_failures_are_unavailable_not_crashes(fake_llm):
    embedder = OpenAIEmbedder(openai_config(fake_llm), env={"TEKTON_TEST_EMBED_KEY": "k"})
    fake_llm.script(status(500))
    with pytest.raises(RetrievalUnavailable, match="answered 500"):
        embedder.embed(["x"])
    fake_llm.script(ok([[0.0, 0.0]]))
    with pytest.raises(RetrievalUnavailable, match="empty vector"):
        embedder.embed(["x"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    nowhere = OpenAIEmbedder(
        EmbeddingConfig(backend="openai", model="m", base_url=closed, key_env=None)
    )
    with pytest.raises(RetrievalUnavailable, match="unreachable"):
        nowhere.embed(["x"])


def test_bad_embedding_config_is_a_clear_error():
    with pytest.raises(RetrievalError, match="unknown embedding backend"):
        EmbeddingConfig(backend="sentence-transformers")
    with pytest.raises(RetrievalError, match="needs a model"):
        EmbeddingConfig(backend="openai")
    with pytest.raises(RetrievalError, match="environment variable"):
        EmbeddingConfig(backend="openai", model="m", key_env="sk-live-oops")
