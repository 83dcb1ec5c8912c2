"""The readable part of an answer while it streams.

A structured answer streams as JSON (`{"position": "...", "checks": [...], ...}`); what a
person wants to watch is the text its stored card will show: the top-level "position",
else "rationale" (READABLE_KEYS, the order tui/state.py card_from_answer and
runs/render.py read them in). ReadableText is fed the answer piece by piece and keeps
the decoded value of that field so far; it never waits for the whole document, and a
piece may end anywhere (inside a key, between a backslash and its letter, half way
through a `\\uXXXX` escape or between the two halves of a surrogate pair): what cannot be
decoded yet waits for the next piece. Text that does not start as a JSON object (after
whitespace and an optional ```json fence) is a plain answer and passes as it is.
"""

from __future__ import annotations

import re

READABLE_KEYS = ("position", "rationale")  # the first one the answer has is shown

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_PLAIN_RUN = re.compile(r'[^"\\]+')
_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\r?\n")

_START, _PLAIN, _JSON = "start", "plain", "json"


def answer_readable(answer: dict) -> str:
    """What a stored card shows of an answer (the field ReadableText streams)."""
    for key in READABLE_KEYS:
        value = answer.get(key)
        if value is not None:
            return str(value)
    return ""


class ReadableText:
    """`feed(piece)` the streamed answer; `text` is its readable part so far."""

    def __init__(self) -> None:
        self._mode = _START
        self._head = ""  # what came before the mode was known
        self._plain: list[str] = []
        self._values: dict[str, list[str]] = {}
        # The JSON scanner: nesting depth, where it is at depth 1, the string it is in.
        self._depth = 0
        self._expect = "key"  # at depth 1: "key", "colon", "value" or "comma"
        self._in_string = False
        self._key: list[str] | None = None  # a depth-1 key being read
        self._last_key = ""
        self._target: list[str] | None = None  # the readable value being read
        self._escape = ""  # an escape cut by the end of a piece (backslash included)
        self._high = ""  # a high surrogate waiting for its low half

    @property
    def text(self) -> str:
        if self._mode == _PLAIN:
            return "".join(self._plain)
        for key in READABLE_KEYS:
            if key in self._values:
                return "".join(self._values[key])
        return ""

    def feed(self, piece: str) -> str:
        """Take the next piece; returns `text`."""
        if self._mode == _START:
            self._head += piece
            stripped = self._head.lstrip()
            fence = _FENCE.match(stripped)
            if fence:
                stripped = stripped[fence.end() :].lstrip()
            elif stripped.startswith("`") and "\n" not in stripped and len(stripped) < 16:
                return ""  # perhaps a fence: wait for its line to end
            if not stripped:
                return ""
            if stripped[0] == "{":
                self._mode = _JSON
                self._scan(stripped)
            else:
                self._mode = _PLAIN
                self._plain.append(self._head)
            self._head = ""
        elif self._mode == _PLAIN:
            self._plain.append(piece)
        else:
            self._scan(piece)
        return self.text

    # --- the JSON scanner -------------------------------------------------------------------

    def _scan(self, s: str) -> None:
        i, n = 0, len(s)
        while i < n:
            if self._in_string:
                i = self._string(s, i)
                continue
            ch = s[i]
            i += 1
            if ch == '"':
                self._in_string = True
                if self._depth == 1 and self._expect == "key":
                    self._key = []
                elif self._depth == 1 and self._expect == "value":
                    if self._last_key in READABLE_KEYS and self._last_key not in self._values:
                        self._target = self._values[self._last_key] = []
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 1:
                    self._expect = "comma"  # a nested value ended
            elif self._depth == 1:
                if ch == ":" and self._expect == "colon":
                    self._expect = "value"
                elif ch == ",":
                    self._expect = "key"
                elif not ch.isspace() and self._expect == "value":
                    self._expect = "comma"  # a number, true, false or null

    def _string(self, s: str, i: int) -> int:
        """Inside a string from s[i]: read up to its end or the end of the piece."""
        out = self._key if self._key is not None else self._target
        n = len(s)
        while i < n:
            if self._escape:
                self._escape += s[i]
                i += 1
                decoded = self._decode()
                if decoded is not None and out is not None:
                    out.append(decoded)
                continue
            run = _PLAIN_RUN.match(s, i)
            if run:
                if out is not None:
                    if self._high:  # a lone high surrogate: not a character
                        out.append("\ufffd")
                        self._high = ""
                    out.append(run.group())
                i = run.end()
                continue
            if s[i] == "\\":
                self._escape = "\\"
                i += 1
                continue
            i += 1  # the closing quote
            self._string_end()
            return i
        return i

    def _decode(self) -> str | None:
        """The character of a complete escape (clearing it), or None while it is cut."""
        esc = self._escape
        if esc[1] != "u":
            self._escape = ""
            return self._with_high(_ESCAPES.get(esc[1], esc[1]))
        if len(esc) < 6:
            return None
        self._escape = ""
        try:
            code = int(esc[2:6], 16)
        except ValueError:
            return self._with_high("\ufffd")
        if 0xD800 <= code < 0xDC00:
            lone = "\ufffd" if self._high else ""
            self._high = chr(code)
            return lone or None
        if 0xDC00 <= code < 0xE000 and self._high:
            high, self._high = ord(self._high), ""
            return chr(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00))
        return self._with_high(chr(code) if not 0xDC00 <= code < 0xE000 else "\ufffd")

    def _with_high(self, char: str) -> str:
        if self._high:
            self._high = ""
            return "\ufffd" + char
        return char

    def _string_end(self) -> None:
        self._in_string = False
        if self._key is not None:
            self._last_key = "".join(self._key)
            self._key = None
            self._expect = "colon"
        elif self._depth == 1 and self._expect == "value":
            self._expect = "comma"
        if self._target is not None and self._high:
            self._target.append("\ufffd")
        self._target = None
        self._high = ""
