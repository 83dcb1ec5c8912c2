"""Secret and PII redaction, applied to everything Tekton stores or shows.

Each match becomes `[LABEL#n]`, where n numbers the distinct values of that label within
one call, so the same secret twice reads `[API_KEY#1]` both times and a reader can still
tell values apart without seeing them.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

# Order matters: the most specific patterns run first so an Anthropic key is not
# half-eaten by the generic `sk-` rule, and a JWT is not mistaken for a token assignment.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")),
    # No word boundary for these two: their prefixes are distinctive, and a key glued to
    # the text before it ("token:sk-ant-...", "xsk-ant-...") must still go.
    ("API_KEY", re.compile(r"sk-ant-[A-Za-z0-9_-]{10,}")),
    ("API_KEY", re.compile(r"sk-or-v1-[A-Za-z0-9_-]{10,}")),
    ("API_KEY", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{16,}")),
    ("API_KEY", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("API_KEY", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("API_KEY", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("TOKEN", re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=-]{12,}")),
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
]
# key=..., api_key: "...", password = ..., token=...: the value goes, the name stays.
_ASSIGNMENT = re.compile(
    r"""(?ix)
    \b((?:[a-z0-9_]*?(?:api[_-]?key|secret|token|passw(?:or)?d|access[_-]?key|private[_-]?key)|key))
    (\s*[:=]\s*)
    (["']?)([^\s"',;&]{6,})\3
    """
)
# A card number is 13-19 digits that stand alone, written as one run or in groups of 4-6
# split by single spaces or dashes (4-4-4-4, Amex's 4-6-5), and passes the Luhn check.
# Digits after a decimal point or inside a longer token (a duration "0.1234567890123s",
# a hash, an id) are not one.
_CARD = re.compile(r"(?<![\w.,-])(?:\d{13,19}|\d{4,6}(?:[ -]\d{4,6}){2,3})(?![\w-]|[.,]\d)")
# The lookarounds refuse a match inside a longer run of digit groups, so a 16-digit
# number written in fours (a non-Luhn "card") is not taken for a phone number.
_PHONE = re.compile(
    r"(?<![\w.])(?<!\d[\s.-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])"
    r"\d{3,4}[\s.-]\d{3,4}(?![\w.])(?![\s.-]\d)"
)
_LABEL_RE = re.compile(r"^\[[A-Z_]+#\d+\]$")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class Labeller:
    """Numbers distinct values per label; share one across calls to keep labels consistent."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], str] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, label: str, value: str) -> str:
        key = (label, value)
        if key not in self.seen:
            self.counts[label] = self.counts.get(label, 0) + 1
            self.seen[key] = f"[{label}#{self.counts[label]}]"
        return self.seen[key]


_EVERY_PATTERN = (*(p for _, p in _PATTERNS), _ASSIGNMENT, _CARD, _PHONE)
_CACHED_MAX_CHARS = 4096
# Every name _ASSIGNMENT takes contains one of these. Its lazy scan of every word is two
# thirds of a search for all the patterns, so text without any of them is not scanned;
# casefold() maps what its IGNORECASE also takes for these letters (K for k, ſ for s).
_ASSIGNMENT_WORDS = ("key", "secret", "token", "passw")


def _may_assign(text: str, pos: int = 0) -> bool:
    """Whether _ASSIGNMENT could match in text[pos:]."""
    folded = (text[pos:] if pos else text).casefold()
    return any(word in folded for word in _ASSIGNMENT_WORDS)


def _any_match(text: str, pos: int = 0) -> bool:
    """Whether some pattern matches wholly in text[pos:] (seeing the text before pos)."""
    for p in _EVERY_PATTERN:
        if p is _ASSIGNMENT and not _may_assign(text, pos):
            continue
        if p.search(text, pos):
            return True
    return False


@functools.cache
def _partial_patterns() -> tuple[Any, ...]:
    # `regex` for its partial matching (a prefix of a possible match), which `re` lacks;
    # imported on first use, as only a streaming stage needs it.
    import regex

    return tuple(regex.compile(p.pattern, p.flags) for p in _EVERY_PATTERN)


@functools.lru_cache(maxsize=4096)  # the same answer streamed again (replays, offline)
def grown_clean(text: str, since: int, final: bool = False) -> int | None:
    """Redaction of a text that grows (a streamed answer), done on what changed: `text`
    is a text that no pattern matched (with nothing before `since` able to begin a match
    once more text comes, what this returned for it; 0 for a new text) plus what came
    after it. None when a pattern now matches, so redact(text) differs from `text`; else
    where a match could still begin: the earliest start of a pattern matching up to the
    end as the beginning of a longer match (len(text) when none can).

    A match that began before `since` would have been a partial match at the old end that
    started earlier, so only the text from `since` is searched, its left context seen:
    a second of a run's CPU went to redacting each call's whole answer at every flush.
    With `final` (no more text will come) only whole matches are looked for: the partial
    search, two thirds of the cost, answers a question a finished text no longer asks."""
    if _any_match(text, since):
        return None
    first = len(text)
    if final:
        return first
    # Without one of its words after `since`, an assignment can only be part-way through
    # its name, which runs to the end: it begins in the text's last run of name letters.
    assign_from = since if _may_assign(text, since) else _trailing_name(text, since)
    for pattern, plain in zip(_partial_patterns(), _EVERY_PATTERN, strict=True):
        pos = assign_from if plain is _ASSIGNMENT else since
        m = pattern.search(text, pos, partial=True)  # no whole match: a partial one
        if m is not None and m.start() < first:
            first = m.start()
    return first


_NAME_RUN = re.compile(r"(?i)[a-z0-9_]+\Z")  # the class of _ASSIGNMENT's names


def _trailing_name(text: str, since: int) -> int:
    """Where the run of name letters that ends `text` begins (at `since` at the earliest;
    len(text) when the text ends in something else)."""
    m = _NAME_RUN.search(text, since)
    return m.start() if m else len(text)


def open_tail_start(text: str, window: int) -> int:
    """Where the end of `text` that more text could still make part of a secret begins
    (len(text) when nothing could): the earliest start, within the last `window`
    characters, of a pattern that matches up to the end, wholly or as the beginning of a
    longer match. A stream holds back only that tail, usually the last word or less,
    where a fixed number of characters delayed every word."""
    end = len(text)
    first = end
    for pattern in _partial_patterns():
        pos = max(0, end - window)
        while pos < first:
            m = pattern.search(text, pos, partial=True)
            if m is None or m.start() >= first:
                break
            if m.end() == end:
                first = m.start()
                break
            pos = m.start() + 1  # a whole match that ends earlier: look past its start
    return first


@functools.lru_cache(maxsize=16384)
def _is_clean(text: str) -> bool:
    """No pattern matches at all, so redaction would return the text as it is. Cached:
    prompts carry the same earlier artifacts to every call of a run."""
    return not _any_match(text)


def _redact_text(text: str, label: Callable[[str, str], str]) -> str:
    if len(text) <= _CACHED_MAX_CHARS and _is_clean(text):
        return text
    for name, pattern in _PATTERNS:
        text = pattern.sub(lambda m, n=name: label(n, m.group(0)), text)

    def assignment(m: re.Match[str]) -> str:
        value = m.group(4)
        if _LABEL_RE.match(value):
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{m.group(3)}{label('SECRET', value)}{m.group(3)}"

    if _may_assign(text):
        text = _ASSIGNMENT.sub(assignment, text)

    def card(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            return label("CARD", digits)
        return m.group(0)

    text = _CARD.sub(card, text)
    text = _PHONE.sub(lambda m: label("PHONE", re.sub(r"\D", "", m.group(0))), text)
    return text


def redact(value: Any, *, labeller: Labeller | None = None) -> Any:
    """Return `value` with secrets and PII replaced; walks dicts, lists and tuples.

    Dict keys are kept (they are field names), strings are redacted, other scalars pass.
    """
    label = labeller or Labeller()
    if isinstance(value, str):
        return _redact_text(value, label)
    if isinstance(value, dict):
        return {k: redact(v, labeller=label) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v, labeller=label) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """Logging filter: redacts the formatted message so no secret reaches a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logger's problem, not ours
            return True
        record.msg = redact(message)
        record.args = ()
        return True
