"""Text shaping shared by indexing and search: the lexical (BM25) form of a text, and keys."""

from __future__ import annotations

import hashlib
import re

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_PATH_WORDS = re.compile(r"[A-Za-z0-9]+")
LEXICAL_MAX_BYTES = 60000  # under Milvus' 65,535-byte VARCHAR


def split_identifier(word: str) -> list[str]:
    """`open_file` -> [open, file]; `HTTPClientError` -> [HTTP, Client, Error]."""
    parts: list[str] = []
    for piece in word.split("_"):
        parts.extend(_CAMEL.findall(piece))
    return [p for p in parts if p]


def lexical(text: str, *, extra: str = "") -> str:
    """The text BM25 sees: `extra` (a path, a symbol) and `text`, followed by the parts of
    every compound identifier, so "open file" finds `open_file` and `openFile`. Milvus'
    standard analyzer keeps `open_file` as one token; queries go through this too."""
    parts: list[str] = []
    for word in _IDENT.findall(f"{extra}\n{text}"):
        pieces = split_identifier(word)
        if len(pieces) > 1:
            parts.extend(pieces)
    out = f"{' '.join(_PATH_WORDS.findall(extra))}\n{text}\n{' '.join(parts)}".strip()
    return clip_bytes(out, LEXICAL_MAX_BYTES)


def clip_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes (Milvus measures VARCHAR in bytes)."""
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def has_terms(text: str) -> bool:
    """True when BM25 has something to match (a query of only punctuation has not)."""
    return bool(re.search(r"\w", text))


def short_hash(*parts: str, n: int = 16) -> str:
    return hashlib.sha1("\0".join(parts).encode("utf-8")).hexdigest()[:n]


def file_key(path: str, blob: str) -> str:
    """One version of one file: a path with its blob sha. A rename is a new key (the path
    is part of every chunk), an unchanged file keeps its key from commit to commit."""
    return short_hash(path, blob)


def repo_key(repo: str) -> str:
    return short_hash(repo, n=12)
