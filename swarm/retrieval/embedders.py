"""Embeddings behind one small interface: `model`, `dim`, `embed(texts)`.

Offline by default with WordLlama, whose weights and tokenizer ship inside its wheel (no
download, ever). Or any OpenAI-compatible embeddings endpoint through the official `openai`
SDK; like the LLM providers, its key is read from the environment variable the config
names, when the embedder is built, and kept nowhere else.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from swarm.retrieval.errors import RetrievalError, RetrievalUnavailable

WORDLLAMA_CONFIG = "l2_supercat"
WORDLLAMA_DIM = 256
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Embedder(Protocol):
    """`model` and `dim` are recorded on the collections: vectors of two models never mix."""

    @property
    def model(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector of `dim` floats per text, in order. Raises
        RetrievalUnavailable when the model cannot be loaded or called."""
        ...


@dataclass(frozen=True)
class EmbeddingConfig:
    """`backend` "wordllama" (offline, the default) or "openai" (an OpenAI-compatible
    /embeddings endpoint at `base_url`, key from env var `key_env`; None for a local server
    that takes none). `dimensions` asks the endpoint for shorter vectors (OpenAI's v3
    models); otherwise the dimension is learned from the first answer."""

    backend: str = "wordllama"
    model: str = ""
    base_url: str | None = None
    key_env: str | None = "OPENAI_API_KEY"
    dimensions: int | None = None
    batch_size: int = 64
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.backend not in ("wordllama", "openai"):
            raise RetrievalError(
                f"unknown embedding backend {self.backend!r} (wordllama or openai)"
            )
        if self.backend == "openai" and not self.model:
            raise RetrievalError("the openai embedding backend needs a model name")
        if self.key_env is not None and not _ENV_NAME.match(self.key_env):
            raise RetrievalError(f"key_env must name an environment variable, got {self.key_env!r}")
        if self.dimensions is not None and self.dimensions < 1:
            raise RetrievalError(f"dimensions must be positive, got {self.dimensions}")


def embedder_build(config: EmbeddingConfig, *, env: Mapping[str, str] | None = None) -> Embedder:
    """The embedder `config` describes. Cheap: models load and endpoints are called on
    first use. Raises RetrievalUnavailable when the openai key variable is not set."""
    if config.backend == "openai":
        return OpenAIEmbedder(config, env=env)
    return WordLlamaEmbedder()


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    if not norm or math.isnan(norm):
        raise RetrievalUnavailable("the embedding model returned an empty vector")
    return [x / norm for x in vector]


class WordLlamaEmbedder:
    """WordLlama l2_supercat, 256 dimensions, from the files inside the installed wheel."""

    model = f"wordllama/{WORDLLAMA_CONFIG}-{WORDLLAMA_DIM}"
    dim = WORDLLAMA_DIM
    _lock = threading.Lock()
    _loaded: Any = None  # shared by every instance of the process: the model is read-only

    def _model(self) -> Any:
        with WordLlamaEmbedder._lock:
            if WordLlamaEmbedder._loaded is None:
                try:
                    import wordllama
                    from wordllama import WordLlama

                    # The wheel keeps weights/ and tokenizers/ beside the package; passing it
                    # as the cache directory finds both (the default lookup misses the
                    # tokenizer), and disable_download makes a missing file an error instead
                    # of a network call.
                    WordLlamaEmbedder._loaded = WordLlama.load(
                        config=WORDLLAMA_CONFIG,
                        dim=WORDLLAMA_DIM,
                        cache_dir=Path(wordllama.__file__).parent,
                        disable_download=True,
                    )
                except (ImportError, FileNotFoundError, ValueError) as exc:
                    raise RetrievalUnavailable(f"cannot load the wordllama model: {exc}") from None
            return WordLlamaEmbedder._loaded

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        # An empty text pools to a zero vector, which has no direction.
        safe = [t if t.strip() else "(empty)" for t in texts]
        # Batches pad to their longest text: embedding in length order pads far less.
        order = sorted(range(len(safe)), key=lambda i: len(safe[i]))
        model = self._model()
        with WordLlamaEmbedder._lock:  # one tokenizer, shared: keep its padding state sane
            vectors = model.embed([safe[i] for i in order], norm=True, batch_size=64)
        out: list[list[float]] = [[] for _ in safe]
        for position, i in enumerate(order):
            out[i] = vectors[position].tolist()
        return out


class OpenAIEmbedder:
    """POST {base_url}/embeddings through the official SDK, in batches, no SDK retries
    (a failure degrades retrieval; it is never worth stalling a stage for)."""

    def __init__(self, config: EmbeddingConfig, *, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        if config.key_env is None:
            self._api_key = "no-key-needed"  # the SDK refuses to start without one
        else:
            self._api_key = env.get(config.key_env) or ""
            if not self._api_key:
                raise RetrievalUnavailable(
                    f"the openai embedding backend needs env var {config.key_env} (not set)"
                )
        self.config = config
        self.model = f"openai/{config.model}"
        self._dim = config.dimensions
        self._client: Any = None

    def _sdk(self) -> Any:
        if self._client is None:
            import openai  # deferred: importing the SDK is slow

            self._client = openai.OpenAI(
                api_key=self._api_key,
                base_url=self.config.base_url,
                max_retries=0,
                timeout=self.config.timeout_s,
            )
        return self._client

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = len(self._call(["dimension probe"])[0])
        return self._dim

    def _call(self, texts: list[str]) -> list[list[float]]:
        import openai

        kwargs: dict[str, Any] = {"model": self.config.model, "input": texts}
        if self.config.dimensions is not None:
            kwargs["dimensions"] = self.config.dimensions
        try:
            response = self._sdk().embeddings.create(**kwargs)
        except openai.APIStatusError as exc:
            raise RetrievalUnavailable(
                f"embedding endpoint answered {exc.status_code} for {self.config.model}"
            ) from None
        except openai.OpenAIError as exc:
            raise RetrievalUnavailable(
                f"embedding endpoint unreachable: {type(exc).__name__}"
            ) from None
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise RetrievalUnavailable(
                f"embedding endpoint returned {len(data)} vectors for {len(texts)} texts"
            )
        return [_unit(d.embedding) for d in data]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        safe = [t if t.strip() else "(empty)" for t in texts]
        for i in range(0, len(safe), self.config.batch_size):
            vectors = self._call(safe[i : i + self.config.batch_size])
            if self._dim is None:
                self._dim = len(vectors[0])
            if any(len(v) != self._dim for v in vectors):
                raise RetrievalUnavailable(
                    f"embedding endpoint changed dimension mid-way (expected {self._dim})"
                )
            out.extend(vectors)
        return out
