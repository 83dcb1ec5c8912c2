"""Retrieval (issue 10): a Milvus index of repository chunks and lessons, hybrid search
(dense + BM25, reciprocal-rank fusion), per namespace. No Django here; `service.Retrieval`
is what the Django side calls. Importing this package is cheap: pymilvus, the embedding
model and the Milvus connection load on first use."""

from swarm.retrieval.embedders import EmbeddingConfig
from swarm.retrieval.errors import RetrievalError, RetrievalUnavailable
from swarm.retrieval.indexer import IndexReport
from swarm.retrieval.lessons import LESSON_KINDS, LessonHit, LessonSearch, MilvusLessons
from swarm.retrieval.search import CodeHit, CodeSearch
from swarm.retrieval.server import local_server_ensure, local_server_info, local_server_stop
from swarm.retrieval.service import (
    RepoIndexStatus,
    Retrieval,
    RetrievalConfig,
    RetrievalStatus,
    retrieval_for,
)

__all__ = [
    "LESSON_KINDS",
    "CodeHit",
    "CodeSearch",
    "EmbeddingConfig",
    "IndexReport",
    "LessonHit",
    "LessonSearch",
    "MilvusLessons",
    "RepoIndexStatus",
    "Retrieval",
    "RetrievalConfig",
    "RetrievalError",
    "RetrievalStatus",
    "RetrievalUnavailable",
    "local_server_ensure",
    "local_server_info",
    "local_server_stop",
    "retrieval_for",
]
