"""What the run screen shows, kept apart from the widgets: a run's stages and each stage's
transcript cards, built from the API's run detail and transcript and then moved on by the
event stream.

Token deltas append to a live card of their call; the stored `stage.progress` message of
the same stage, role and round replaces that card where it stands; a `discard` delta
drops it. A delta lost on a reconnect costs nothing: the stored message still comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tui.stream import Event

STAGES = (
    "plan",
    "research",
    "plan_update",
    "code",
    "review",
    "threat",
    "integrate",
    "test_debug",
    "release",
)
ROLES = ("proponent", "skeptic", "pragmatist", "mediator")
FINISHED_RUN = ("succeeded", "failed", "cancelled")


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def round_label(role: str, number: int) -> str:
    if role == "mediator":
        return "mediator"
    return "opening" if number == 0 else f"debate {number}"


@dataclass
class Card:
    """One agent message: stored (seq set) or still streaming (live, call_id set)."""

    stage: str
    role: str
    round: int
    attempt: int = 0
    model: str = ""
    text: str = ""
    confidence: float | None = None
    vote: dict[str, Any] | None = None
    seq: int | None = None
    call_id: str = ""

    @property
    def is_live(self) -> bool:
        return self.seq is None

    @property
    def label(self) -> str:
        return round_label(self.role, self.round)


def card_from_answer(
    *, stage: str, role: str, number: int, attempt: int, model: str, answer: dict, seq: int | None
) -> Card:
    position = answer.get("position", answer.get("rationale"))
    confidence = _num(answer.get("self_confidence", answer.get("confidence")))
    vote = answer.get("vote") if isinstance(answer.get("vote"), dict) else None
    return Card(
        stage=stage,
        role=role,
        round=number,
        attempt=attempt,
        model=model,
        text="" if position is None else str(position),
        confidence=confidence,
        vote=vote,
        seq=seq,
    )


@dataclass
class StageView:
    stage: str
    status: str = "queued"
    attempt: int = 0
    confidence: float | None = None
    approval: float | None = None
    votes: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    note: str = ""
    duration_s: float | None = None
    tokens: int = 0
    cost_usd: float = 0.0


class RunState:
    """A run as the screen shows it. `apply(event)` returns what changed: a set of
    "run", "stages", "artifacts" and "transcript:<stage>"."""

    def __init__(self, detail: dict[str, Any]):
        self.run: dict[str, Any] = {}
        self.stages: dict[str, StageView] = {}
        self.cards: dict[str, list[Card]] = {}
        self.artifacts: list[dict[str, Any]] = []
        self._seen: set[int] = set()
        self.detail_update(detail)

    # --- from the API -----------------------------------------------------------------------
    def detail_update(self, detail: dict[str, Any]) -> None:
        """The run detail is the truth for everything but the transcript, unless it is older
        than what the stream has applied: a detail read while events kept coming (its
        `last_event_seq` is behind) keeps the stream's statuses and attempts, or a stage
        that had started would show as queued again and take its late deltas for new ones."""
        known = int(self.run.get("last_event_seq") or 0)
        stale = int(detail.get("last_event_seq") or 0) < known
        previous, previous_run = self.stages, self.run
        self.run = {k: v for k, v in detail.items() if k not in ("stages", "artifacts")}
        if stale:
            self.run["last_event_seq"] = known
            for key in ("status", "reason"):
                if key in previous_run:
                    self.run[key] = previous_run[key]
        stages: dict[str, StageView] = {}
        for row in sorted(detail.get("stages") or [], key=lambda r: r.get("position", 0)):
            name = str(row.get("stage"))
            stages[name] = StageView(
                stage=name,
                status=str(row.get("status") or "queued"),
                attempt=int(row.get("attempt") or 0),
                confidence=_num(row.get("confidence")),
                approval=_num(row.get("approval")),
                votes=[v for v in row.get("votes") or [] if isinstance(v, dict)],
                reason=str(row.get("reason") or ""),
                note=str(row.get("note") or ""),
                duration_s=_num(row.get("duration_s")),
                tokens=int(row.get("input_tokens") or 0) + int(row.get("output_tokens") or 0),
                cost_usd=_num(row.get("cost_usd")) or 0.0,
            )
        if stale:
            for name, view in stages.items():
                if name in previous:
                    kept = previous[name]
                    view.status, view.attempt = kept.status, kept.attempt
                    view.reason, view.note = kept.reason, kept.note
        self.stages = stages
        for name in stages:
            self.cards.setdefault(name, [])
        self.artifacts = list(detail.get("artifacts") or [])

    def transcript_update(self, transcript: dict[str, Any]) -> None:
        """Stored messages from GET /transcript/, merged by seq with what the stream gave."""
        for stage in transcript.get("stages") or []:
            name = str(stage.get("stage"))
            for rnd in stage.get("rounds") or []:
                for message in rnd.get("messages") or []:
                    seq = message.get("seq")
                    answer = (
                        message.get("answer") if isinstance(message.get("answer"), dict) else {}
                    )
                    self._stored(
                        card_from_answer(
                            stage=name,
                            role=str(message.get("role") or ""),
                            number=int(rnd.get("round") or 0),
                            attempt=int(rnd.get("attempt") or 0),
                            model=str(message.get("model") or ""),
                            answer=answer,
                            seq=seq if isinstance(seq, int) else None,
                        )
                    )
        for cards in self.cards.values():
            cards.sort(key=lambda c: (c.attempt, c.seq if c.seq is not None else 1 << 60))

    # --- properties -------------------------------------------------------------------------
    @property
    def id(self) -> int:
        return int(self.run.get("id") or 0)

    @property
    def status(self) -> str:
        return str(self.run.get("status") or "")

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_RUN

    @property
    def quorum(self) -> float | None:
        return _num((self.run.get("config") or {}).get("quorum"))

    @property
    def threshold(self) -> float | None:
        return _num((self.run.get("config") or {}).get("threshold"))

    @property
    def blocked_stage(self) -> str | None:
        for view in self.stages.values():
            if view.status == "blocked":
                return view.stage
        return None

    # --- from the stream --------------------------------------------------------------------
    def apply(self, event: Event) -> set[str]:
        if event.seq is not None:
            if event.seq in self._seen:
                return set()
            self._seen.add(event.seq)
            if event.seq > int(self.run.get("last_event_seq") or 0):
                self.run["last_event_seq"] = event.seq
        kind, payload = event.kind, event.payload
        stage = event.stage or str(payload.get("stage") or "")
        if kind == "stage.delta":
            return self._delta(stage, payload)
        if kind == "stage.progress":
            answer = payload.get("answer") if isinstance(payload.get("answer"), dict) else {}
            self._stored(
                card_from_answer(
                    stage=stage,
                    role=str(payload.get("role") or ""),
                    number=int(_num(payload.get("round")) or 0),
                    attempt=int(_num(payload.get("attempt")) or 0),
                    model=str(payload.get("model") or ""),
                    answer=answer,
                    seq=event.seq,
                )
            )
            return {f"transcript:{stage}"}
        if kind == "artifact.created":
            if not any(a.get("name") == payload.get("name") for a in self.artifacts):
                self.artifacts.append({"stage": stage, **payload})
            return {"artifacts"}
        if kind.startswith("stage.") and stage in self.stages:
            return self._stage_event(kind, self.stages[stage], payload)
        if kind.startswith("run."):
            status = payload.get("status")
            if kind == "run.started":
                status = "running"
            elif kind == "run.resumed":
                status = "queued"
            if status:
                self.run["status"] = str(status)
            if payload.get("reason"):
                self.run["reason"] = str(payload["reason"])
            return {"run"}
        return set()

    def _stage_event(self, kind: str, view: StageView, payload: dict[str, Any]) -> set[str]:
        attempt = _num(payload.get("attempt"))
        if kind == "stage.started":
            view.status = "running"
            self.run["status"] = "running"
        elif kind == "stage.finished":
            view.status = str(payload.get("status") or "succeeded")
            view.duration_s = _num(payload.get("duration_s"))
        elif kind == "stage.blocked":
            view.status = "blocked"
            self.run["status"] = "blocked"
        elif kind == "stage.approved":
            view.status = str(payload.get("status") or "succeeded")
        elif kind == "stage.retried":
            view.status = "queued"
            if payload.get("note"):
                view.note = str(payload["note"])
        else:
            return set()
        changed = {"stages", "run"}
        if kind == "stage.finished" and view.stage in self.cards:
            # An ended stage streams nothing more: a live card left (its delta came after
            # the stored message, or before the stage's own events) is stale.
            self.cards[view.stage] = [c for c in self.cards[view.stage] if not c.is_live]
            changed.add(f"transcript:{view.stage}")
        if attempt:
            view.attempt = int(attempt)
        if "confidence" in payload:
            view.confidence = _num(payload.get("confidence"))
        if "approval" in payload:
            view.approval = _num(payload.get("approval"))
        if payload.get("reason"):
            view.reason = str(payload["reason"])
        return changed

    def _stored(self, card: Card) -> None:
        cards = self.cards.setdefault(card.stage, [])
        if card.seq is not None and any(c.seq == card.seq for c in cards):
            return
        if card.seq is not None:
            self._seen.add(card.seq)
        for index, other in enumerate(cards):
            if other.is_live and (other.role, other.round) == (card.role, card.round):
                cards[index] = card  # the stored message takes the streaming card's place
                for rest in [c for c in cards if c.is_live and c is not card]:
                    if (rest.role, rest.round) == (card.role, card.round):
                        cards.remove(rest)
                return
        cards.append(card)

    def _delta(self, stage: str, payload: dict[str, Any]) -> set[str]:
        call_id = str(payload.get("call_id") or payload.get("call") or "")
        role = str(payload.get("role") or "")
        number = int(_num(payload.get("round")) or 0)
        cards = self.cards.setdefault(stage, [])
        live = next((c for c in cards if c.is_live and c.call_id == call_id), None)
        if payload.get("discard"):
            if live is not None:
                cards.remove(live)
            return {f"transcript:{stage}"}
        if live is None and self._stored_is_current(stage, role, number):
            return set()  # a late delta of a call whose stored message came already
        view = self.stages.get(stage)
        if (
            live is None
            and view is not None
            and view.status in ("succeeded", "failed", "cancelled", "skipped")
            and _delta_attempt(payload, call_id) <= view.attempt
        ):
            return (
                set()
            )  # that attempt ended: what still arrives of it is late (a retry's is newer)
        if live is None:
            live = Card(stage=stage, role=role, round=number, call_id=call_id)
            live.attempt = self.stages[stage].attempt if stage in self.stages else 0
            cards.append(live)
        text = str(payload.get("text") or "")
        offset = _num(payload.get("offset"))
        if offset is None or int(offset) >= len(live.text):
            live.text += text
        else:
            # A resent piece: it overwrites from its offset instead of doubling the text.
            live.text = live.text[: int(offset)] + text
        if payload.get("model"):
            live.model = str(payload["model"])
        return {f"transcript:{stage}"}

    def _stored_is_current(self, stage: str, role: str, number: int) -> bool:
        view = self.stages.get(stage)
        attempt = view.attempt if view else 0
        return any(
            not c.is_live and (c.role, c.round, c.attempt) == (role, number, attempt)
            for c in self.cards.get(stage, [])
        )


def _delta_attempt(payload: dict[str, Any], call_id: str) -> int:
    """The attempt a delta belongs to: its own field, else the engine's call id
    (`<stage>.<attempt>.<n>`), else 0 (unknown, taken as the current one)."""
    given = _num(payload.get("attempt"))
    if given:
        return int(given)
    parts = call_id.split(".")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0
