"""The two ways retrieval can fail: the caller's mistake, or the index being out of reach."""

from __future__ import annotations


class RetrievalError(ValueError):
    """Bad input: not a git repository, an unknown commit, a bad namespace, an empty query.
    The message is one line, fit to show a person."""


class RetrievalUnavailable(RuntimeError):
    """Milvus cannot be reached, or the embedding model cannot be loaded or called.

    Reads that feed stages never raise it: they return empty results carrying the message
    as a warning. Writes (indexing, lessons) and admin calls raise it so the caller can turn
    it into a warning event."""
