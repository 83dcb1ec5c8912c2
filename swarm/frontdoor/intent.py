"""Which kind of request a prompt is, by fixed word rules, so the same prompt always
picks the same model chain.

The rules, in order:
1. Each intent has a list of cue words and phrases (INTENT_CUES), matched as whole words,
   case-insensitively; a fenced code block or a file name with a source extension counts
   as a `code` cue. The intent with the most cue hits wins; a tie goes to the intent
   earlier in INTENTS (code, design, analyze, search, deep, fast).
2. No cue at all: `fast` for a short prompt (at most FAST_MAX_WORDS words), else
   `general`.
`--intent NAME` (or the API's `intent`) overrides the rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INTENTS = ("code", "design", "analyze", "search", "deep", "fast", "general")
FAST_MAX_WORDS = 12

INTENT_CUES: dict[str, tuple[str, ...]] = {
    "code": ("code", "function", "class", "method", "bug", "fix", "implement", "refactor",
             "unit test", "tests", "compile", "traceback", "stack trace", "exception",
             "regex", "script", "python", "javascript", "typescript", "rust", "golang",
             "sql", "patch", "diff", "debug", "lint"),
    "design": ("design", "architecture", "architect", "schema", "data model", "api design",
               "trade-off", "tradeoff", "trade-offs", "tradeoffs", "diagram", "component",
               "interface", "scalable", "system design"),
    "analyze": ("analyze", "analyse", "analysis", "compare", "review", "evaluate", "assess",
                "explain why", "summarize", "summarise", "critique", "pros and cons",
                "root cause"),
    "search": ("find", "search", "look up", "lookup", "where is", "which file", "locate",
               "grep", "list all", "references to"),
    "deep": ("deep", "deeply", "thorough", "thoroughly", "in depth", "in-depth",
             "step by step", "rigorous", "prove", "proof", "carefully", "think hard"),
    "fast": ("quick", "quickly", "briefly", "brief", "tl;dr", "tldr", "one line",
             "one-liner", "short answer", "yes or no"),
}  # fmt: skip

_FENCE = re.compile(r"```")
_SOURCE_FILE = re.compile(r"\b[\w./-]+\.(?:py|js|ts|tsx|go|rs|java|c|h|cpp|rb|sh|sql)\b")
_PATTERNS = {
    intent: [re.compile(r"(?<![\w-])" + re.escape(cue) + r"(?![\w-])", re.I) for cue in cues]
    for intent, cues in INTENT_CUES.items()
}


@dataclass(frozen=True)
class IntentDecision:
    intent: str
    reason: str  # one line for --explain and the journal
    scores: dict[str, int]


def intent_classify(text: str, *, override: str | None = None) -> IntentDecision:
    """The intent of `text` by the rules above, or `override` when given (an unknown name
    is a ValueError naming the known ones)."""
    if override:
        name = override.strip().lower()
        if name not in INTENTS:
            raise ValueError(f"unknown intent {override!r}; intents: {', '.join(INTENTS)}")
        return IntentDecision(name, "given with --intent", {})
    scores: dict[str, int] = {}
    hits: dict[str, list[str]] = {}
    for intent, patterns in _PATTERNS.items():
        found = [m.group(0).lower() for p in patterns for m in p.finditer(text)]
        if intent == "code":
            found += ["```"] * (len(_FENCE.findall(text)) // 2)
            found += [m.group(0) for m in _SOURCE_FILE.finditer(text)]
        if found:
            scores[intent] = len(found)
            hits[intent] = found
    if scores:
        best = max(scores.values())
        intent = next(i for i in INTENTS if scores.get(i) == best)
        cues = ", ".join(dict.fromkeys(hits[intent]))
        return IntentDecision(intent, f"{best} cue(s): {cues}", scores)
    words = len(text.split())
    if words <= FAST_MAX_WORDS:
        return IntentDecision("fast", f"no cue, short ({words} words)", scores)
    return IntentDecision("general", f"no cue, {words} words", scores)
