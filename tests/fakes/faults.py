"""A fault-injecting responder for FakeLlmServer: a share of calls answer with the faults
a production deployment sees (429 with retry-after, 500, 529, a timeout, a malformed
body, a stream cut mid-answer), and a request whose goal asks for it a 400 or a 401; the
rest go to an inner responder (tests/fakes/diamond.py's DiamondResponder answers every stage validly).

Which call gets which fault is drawn from a RNG seeded with (seed, the request body,
how many times that body was seen), not from arrival order, so a test's faults are the
same whatever order the concurrent calls arrive in, and a retry (the same body again)
gets a fresh draw. Every request is logged with its arrival time, a key (the body's
sha256: a retry of a call sends the same body, and so does the stage's next attempt,
which sends its first calls again) and what it was answered, so a test can check from the
wire that retry-after was waited and that nothing was retried after a 400 or a 401.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.llm_server import Scenario, cut, malformed, slow, status

# Per fault, its share of all calls: six kinds of ~3.3% each, 20% in all.
DEFAULT_RATES: dict[str, float] = {
    "429": 0.034,
    "500": 0.033,
    "529": 0.033,
    "timeout": 0.033,
    "malformed": 0.033,
    "cut": 0.034,
}
TRANSIENT = ("429", "500", "529", "timeout", "malformed", "cut")
NEVER_RETRIED = ("400", "401")
# A goal with "[fault:401]" (or 400, or any fault above) gets that fault on its first call.
_MARKER = re.compile(r"\[fault:(\w+)\]")


@dataclass(frozen=True)
class LoggedRequest:
    at: float  # time.monotonic() when the request arrived
    key: str  # sha256 of the JSON body
    fault: str  # "" (answered by the inner responder) or a DEFAULT_RATES key
    retry_after: float | None = None
    stream: bool = False
    label: str = ""  # what the responder's `label` found in the body (a test's run, say)


class FaultyResponder:
    """responder(path, body) for FakeLlmServer. `timeout_s` is how long a "timeout"
    fault keeps the client waiting (make it longer than the client's timeout)."""

    def __init__(
        self,
        inner: Callable[[str, dict[str, Any]], Scenario],
        *,
        seed: int,
        rates: dict[str, float] | None = None,
        retry_after_s: float = 1.0,
        timeout_s: float = 3.0,
        label: Callable[[str], str] | None = None,
    ) -> None:
        self.inner = inner
        self.seed = seed
        self.rates = dict(DEFAULT_RATES if rates is None else rates)
        if sum(self.rates.values()) >= 1:
            raise ValueError("fault rates must add up to less than 1")
        self.retry_after_s = retry_after_s
        self.timeout_s = timeout_s
        self.label = label
        self.log: list[LoggedRequest] = []
        self._seen: Counter[str] = Counter()
        self._forced_done: set[str] = set()
        self._lock = threading.Lock()

    def _draw(self, key: str) -> str:
        with self._lock:
            self._seen[key] += 1
            nth = self._seen[key]
        roll = random.Random(f"{self.seed}:{key}:{nth}").random()
        for fault, rate in self.rates.items():
            if roll < rate:
                return fault
            roll -= rate
        return ""

    def _forced(self, raw: str) -> str:
        """The fault a `[fault:CODE]` marker in the request asks for, the first time only
        (a goal carries it, so one run meets a request error where the test wants it)."""
        found = _MARKER.search(raw)
        if not found:
            return ""
        with self._lock:
            if found.group(0) in self._forced_done:
                return ""
            self._forced_done.add(found.group(0))
        return found.group(1)

    def __call__(self, path: str, body: dict[str, Any]) -> Scenario:
        raw = json.dumps(body, sort_keys=True)
        key = hashlib.sha256(raw.encode()).hexdigest()
        fault = self._forced(raw) or self._draw(key)
        retry_after = self.retry_after_s if fault == "429" else None
        label = self.label(raw) if self.label is not None else ""
        stream = bool(body.get("stream"))
        with self._lock:
            self.log.append(LoggedRequest(time.monotonic(), key, fault, retry_after, stream, label))
        if fault == "429":
            return status(429, retry_after=retry_after, message="rate limited")
        if fault in ("500", "529", "400", "401"):
            return status(int(fault), message=f"injected {fault}")
        if fault == "timeout":
            return slow(self.timeout_s)
        if fault == "malformed":
            return malformed()
        if fault == "cut":
            return cut(how="drop")
        return self.inner(path, body)

    def faults(self) -> Counter[str]:
        """How many calls got each fault."""
        with self._lock:
            return Counter(r.fault for r in self.log if r.fault)

    def by_key(self) -> dict[str, list[LoggedRequest]]:
        """The logged requests grouped by call (body), each group in arrival order."""
        with self._lock:
            log = sorted(self.log, key=lambda r: r.at)
        groups: dict[str, list[LoggedRequest]] = {}
        for r in log:
            groups.setdefault(r.key, []).append(r)
        return groups
