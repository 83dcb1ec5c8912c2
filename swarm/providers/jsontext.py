"""Pull the JSON value out of a model's text answer.

Models asked for JSON often wrap it in a ```json fence or add a sentence around it; the
gateways' JSON modes do not all forbid that. This accepts those shapes and nothing looser.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)


class JsonTextError(ValueError):
    """The text holds no JSON value."""


def json_from_text(text: str) -> Any:
    """Return the JSON value `text` holds: the whole text, a fenced block, or the first
    object/array in it. Raises JsonTextError (a ValueError) when there is none."""
    if not isinstance(text, str) or not text.strip():
        raise JsonTextError("answer is empty, expected JSON")
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for block in _FENCE.findall(stripped):
        try:
            return json.loads(block.strip())
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", stripped):
        try:
            value, _ = decoder.raw_decode(stripped, match.start())
        except ValueError:
            continue
        return value
    preview = stripped[:80].replace("\n", " ")
    raise JsonTextError(f"answer is not JSON (starts {preview!r})")


def schema_instruction(schema: dict[str, Any]) -> str:
    """The words that ask for JSON matching `schema` when a backend cannot enforce it."""
    return "Answer with one JSON value only, no prose, matching this JSON Schema:\n" + json.dumps(
        schema, ensure_ascii=False
    )
