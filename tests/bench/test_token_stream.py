"""bench.token_stream's own measurement: a stamp split across two deltas is timed once,
when it is whole, and its latency splits into the redaction hold and the path."""

from __future__ import annotations

from bench.token_stream import StampClock


def stamp(t: float) -> str:
    return f"\u00abt={t:.6f}\u00bb"


def test_a_stamp_is_timed_once_when_it_is_whole_and_split_into_hold_and_path():
    clock = StampClock(hold=10)
    first, second = stamp(100.0) + "a" * 30, stamp(100.5) + "b" * 5  # the second is short
    clock.feed({"call_id": "c", "offset": 0, "text": first[:8]}, now=100.2)
    assert clock.latencies == []  # half a stamp is not a token yet
    clock.feed({"call_id": "c", "offset": 8, "text": first[8:]}, now=100.25)
    clock.feed({"call_id": "c", "offset": 0, "text": first + second}, now=101.0)  # rewritten
    assert [round(x, 3) for x in clock.latencies] == [0.25, 0.5]
    holds, paths = clock.split()
    # Neither stamp is inside text that could still become a secret: both go out with
    # their own piece (the second's gate is its own, the last, stamp).
    assert [round(x, 3) for x in holds] == [0.0, 0.0]
    assert [round(x, 3) for x in paths] == [0.25, 0.5]


def test_a_stamp_held_back_until_the_next_piece_counts_as_hold():
    clock = StampClock(hold=40)
    # The first stamp sits inside what could still be a secret ("token=" and a value
    # that has not ended), so it waits for the next piece; plain text does not hold one.
    a, b = "token=" + stamp(10.0) + "abc", stamp(10.2) + " fine. "
    clock.feed({"call_id": "c", "offset": 0, "text": a + b}, now=10.25)
    holds, paths = clock.split()
    assert [round(x, 3) for x in holds] == [0.2, 0.0]
    assert [round(x, 3) for x in paths] == [0.05, 0.05]


def test_a_stamp_followed_by_an_unfinished_word_is_not_held():
    clock = StampClock(hold=40)
    a, b = stamp(10.0) + "Rollback is unte", stamp(10.2) + "sted."
    clock.feed({"call_id": "c", "offset": 0, "text": a + b}, now=10.25)
    holds, _ = clock.split()
    assert [round(x, 3) for x in holds] == [0.0, 0.0]


def test_a_discarded_call_is_forgotten():
    clock = StampClock()
    clock.feed({"call_id": "c", "offset": 0, "text": stamp(1.0) + "z" * 80}, now=1.1)
    clock.feed({"call_id": "c", "discard": True}, now=1.2)
    assert clock.split() == ([], [])
