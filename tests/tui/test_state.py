"""RunState: stored messages, token deltas and stage events as the run screen applies them."""

from __future__ import annotations

from tests.tui.fake import run_detail, transcript
from tui.state import RunState
from tui.stream import Event


def delta(text: str, offset: int, *, call: str = "c1", role: str = "skeptic", rnd: int = 2, **kw):
    payload = {
        "run": 7,
        "stage": "review",
        "role": role,
        "round": rnd,
        "call_id": call,
        "text": text,
        "offset": offset,
        **kw,
    }
    return Event(seq=None, kind="stage.delta", stage="review", payload=payload)


def progress(seq: int, text: str, *, role: str = "skeptic", rnd: int = 2) -> Event:
    payload = {
        "role": role,
        "round": rnd,
        "model": "m/x",
        "attempt": 1,
        "answer": {"position": text, "self_confidence": 0.5},
    }
    return Event(seq=seq, kind="stage.progress", stage="review", payload=payload)


def state() -> RunState:
    s = RunState(run_detail())
    s.transcript_update(transcript())
    return s


def test_deltas_append_to_one_card_and_the_stored_message_replaces_it_in_place():
    s = state()
    before = len(s.cards["review"])
    assert s.apply(delta("Still ", 0)) == {"transcript:review"}
    s.apply(delta("no rollback", 6))
    s.apply(delta("Other role", 0, call="c2", role="proponent"))
    live = [c for c in s.cards["review"] if c.is_live]
    assert [c.text for c in live] == ["Still no rollback", "Other role"]
    index = s.cards["review"].index(live[0])

    s.apply(progress(81, "Still no rollback test: revise."))
    card = s.cards["review"][index]
    assert (card.is_live, card.seq, card.text) == (False, 81, "Still no rollback test: revise.")
    assert len(s.cards["review"]) == before + 2  # the proponent's card still streams
    assert [c.text for c in s.cards["review"] if c.is_live] == ["Other role"]


def test_a_resent_delta_overwrites_from_its_offset_and_a_gap_still_appends():
    s = state()
    s.apply(delta("abc", 0))
    s.apply(delta("bcd", 1))  # resent from offset 1 after a hiccup
    assert [c.text for c in s.cards["review"] if c.is_live] == ["abcd"]
    s.apply(delta("xyz", 10))  # a lost piece: keep what came, the stored text repairs it
    assert [c.text for c in s.cards["review"] if c.is_live] == ["abcdxyz"]


def test_discard_drops_the_partial_text_of_that_call_only():
    s = state()
    s.apply(delta("draft one", 0, call="c1"))
    s.apply(delta("keep me", 0, call="c2", role="proponent"))
    s.apply(delta("", 0, call="c1", discard=True))
    assert [c.text for c in s.cards["review"] if c.is_live] == ["keep me"]


def test_a_late_delta_after_its_stored_message_adds_no_card():
    s = state()
    s.apply(progress(81, "final words"))
    n = len(s.cards["review"])
    assert s.apply(delta("final", 0, call="late")) == set()
    assert len(s.cards["review"]) == n


def test_an_ended_stage_keeps_no_streaming_card_and_takes_no_late_delta():
    s = state()
    s.apply(delta("a call whose stored message never came", 0, call="review.1.7", rnd=5))
    assert any(c.is_live for c in s.cards["review"])
    finished = Event(seq=90, kind="stage.finished", stage="review", payload={"status": "succeeded"})
    assert "transcript:review" in s.apply(finished)
    assert not any(c.is_live for c in s.cards["review"])
    assert s.apply(delta("later still", 0, call="review.1.8", rnd=6)) == set()
    assert not any(c.is_live for c in s.cards["review"])
    # A retry's first words may come before its stage.retried event: they are kept.
    assert s.apply(delta("second try", 0, call="review.2.1", rnd=7)) == {"transcript:review"}


def test_stored_messages_are_not_doubled_when_the_stream_replays_what_the_transcript_had():
    s = state()
    n = len(s.cards["review"])
    assert s.apply(progress(66, "Route order is tested now.", role="proponent", rnd=1)) == set()
    assert len(s.cards["review"]) == n


def test_stage_events_move_columns_and_the_run_status():
    s = state()
    changed = s.apply(Event(81, "stage.approved", "review", {"status": "succeeded", "by": "ada"}))
    assert "stages" in changed and s.stages["review"].status == "succeeded"
    s.apply(Event(82, "stage.started", "integrate", {"attempt": 1}))
    assert (s.stages["integrate"].status, s.stages["integrate"].attempt, s.status) == (
        "running",
        1,
        "running",
    )
    s.apply(
        Event(
            83,
            "stage.blocked",
            "integrate",
            {"reason": "quorum 0.5", "confidence": 0.6, "approval": 0.5, "attempt": 1},
        )
    )
    assert (s.stages["integrate"].status, s.stages["integrate"].approval, s.status) == (
        "blocked",
        0.5,
        "blocked",
    )
    assert s.blocked_stage == "integrate"
    s.apply(Event(84, "run.cancelled", "", {"status": "cancelled", "reason": "aborted"}))
    assert s.is_finished and s.run["last_event_seq"] == 84


def test_a_detail_read_before_the_latest_events_does_not_roll_back_what_the_stream_said():
    s = state()
    # The stream: review approved and retried, its attempt 2 running, a message stored.
    s.apply(Event(seq=81, kind="run.resumed", stage="", payload={}))
    s.apply(Event(seq=82, kind="stage.started", stage="review", payload={"attempt": 2}))
    s.apply(Event(seq=83, kind="run.started", stage="", payload={}))
    stored = progress(84, "final words")
    stored.payload["attempt"] = 2
    s.apply(stored)
    # A detail read before those events arrives late: review still blocked at attempt 1.
    old = run_detail()
    assert old["last_event_seq"] == 80
    s.detail_update(old)
    review = s.stages["review"]
    assert (review.status, review.attempt, s.status) == ("running", 2, "running")
    assert s.run["last_event_seq"] == 84
    assert review.votes  # what only the detail knows is still taken from it
    # So the stored message's late last delta is known for late: no new card.
    n = len(s.cards["review"])
    assert s.apply(delta("words", 6, call="review.2.3")) == set()
    assert len(s.cards["review"]) == n

    # A detail as new as the stream is the truth again.
    fresh = run_detail(status="succeeded")
    fresh["last_event_seq"] = 90
    s.detail_update(fresh)
    assert s.stages["review"].status == "queued"  # that fake's review row
    assert s.status == "succeeded"
