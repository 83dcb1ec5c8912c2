"""DeltaCoalescer: pieces joined per call and let out at most every interval, a tail held
back so a key split across pieces is still redacted, discards only for published text;
DeltaRelay: the coalescing done on the engine's loop, events passed on after the text."""

import asyncio

from swarm.deltas import DeltaCoalescer, DeltaRelay
from swarm.events import AgentDelta


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def piece(text: str, call: str = "c1", role: str = "skeptic", **kw) -> AgentDelta:
    return AgentDelta(stage="plan", role=role, round=1, call_id=call, text=text, **kw)


def published(out, call="c1") -> str:
    return "".join(p["text"] for _, p in out if p["call_id"] == call and "text" in p)


def test_pieces_within_an_interval_go_out_as_one_payload_per_call():
    clock = Clock()
    c = DeltaCoalescer(interval=0.05, hold=0, clock=clock)
    clock.now += 1
    for word in ["Rollback ", "is ", "untested"]:
        c.add(piece(word))
    c.add(piece("Other", call="c2", role="proponent"))
    out = c.flush()
    assert [(s, p["call_id"], p["text"], p["offset"]) for s, p in out] == [
        ("plan", "c1", "Rollback is untested", 0),
        ("plan", "c2", "Other", 0),
    ]
    c.add(piece(" twice"))
    assert c.flush() == []  # within the interval: it waits
    assert 0 < c.due_in() <= 0.05
    clock.now += 0.06
    ((_, payload),) = c.flush()
    assert (payload["text"], payload["offset"]) == (" twice", len("Rollback is untested"))


def test_now_ignores_the_interval():
    c = DeltaCoalescer(interval=10, hold=0, clock=Clock())
    c.add(piece("x"))
    assert c.flush() == []
    assert published(c.flush(now=True)) == "x"


def test_a_key_split_across_pieces_is_never_published():
    clock = Clock()
    c = DeltaCoalescer(interval=0, clock=clock)
    key = "sk-ant-api03-" + "A1b2C3d4E5f6G7h8"
    seen = []
    for part in ["Use the key ", key[:9], key[9:], " to call it, then stop here."]:
        c.add(piece(part))
        seen += c.flush()
    c.add(piece("", done=True))
    seen += c.flush()
    text = ""
    for _, p in seen:
        text = text[: p["offset"]] + p["text"]
    assert "sk-ant" not in text and "A1b2" not in text
    assert text == "Use the key [API_KEY#1] to call it, then stop here."


def test_only_a_tail_that_could_still_become_a_secret_waits():
    c = DeltaCoalescer(interval=0, clock=Clock())
    c.add(piece("Rollback is untested. "))
    assert published(c.flush()) == "Rollback is untested. "  # nothing in it could grow
    c.add(piece("Ask bob"))
    assert published(c.flush()) == "Ask "  # "bob" could be the start of an address
    c.add(piece("@example.com for the key sk-ant-api"))
    assert published(c.flush()) == "[EMAIL#1] for the key "
    c.add(piece("", done=True))
    assert published(c.flush()) == "sk-ant-api"  # the call ended: nothing more can come
    assert not c.pending


def test_the_open_tail_is_looked_for_within_the_hold_window():
    c = DeltaCoalescer(interval=0, hold=10, clock=Clock())
    c.add(piece("0123456789abcdef key=ab"))
    assert published(c.flush()) == "0123456789abcdef "  # a word begun before it goes
    c.add(piece("cdef12 and more"))
    assert published(c.flush()) == "key=[SECRET#1] and "


def test_a_discard_is_sent_only_for_a_call_that_published_text():
    c = DeltaCoalescer(interval=0, hold=0, clock=Clock())
    c.add(piece("never sent", call="quiet"))
    c.add(piece("", call="quiet", discard=True))
    assert c.flush() == []
    c.add(piece("half an answer"))
    c.flush()
    c.add(piece("", discard=True))
    ((_, payload),) = c.flush()
    assert payload == {"role": "skeptic", "round": 1, "call_id": "c1", "discard": True}
    c.add(piece("again"))
    assert [p["offset"] for _, p in c.flush()] == [0]  # the retry starts a fresh text


def test_what_goes_out_is_the_answers_readable_text_and_an_empty_piece_opens_its_card():
    c = DeltaCoalescer(interval=0, hold=0, clock=Clock())
    c.add(piece('{"score": {"a": 1}, "posi'))
    ((_, opened),) = c.flush()  # no readable text yet: an empty piece opens the card
    assert (opened["text"], opened["offset"]) == ("", 0)
    c.add(piece('tion": "Roll\\u00e9 back'))
    c.add(piece('\\n", "checks": ["x"]}', done=True))
    assert published(c.flush()) == "Rollé back\n"
    c.add(piece('{"artifact": {"goals": ["g"]}', call="m", role="mediator"))
    c.flush()
    c.add(piece("", call="m", discard=True))  # its card is open: subscribers drop it
    ((_, dropped),) = c.flush()
    assert dropped == {"role": "mediator", "round": 1, "call_id": "m", "discard": True}


def test_redacting_only_what_changed_gives_what_redacting_everything_gives():
    """Each flush searches only the text after the last flush's clean part; at every flush,
    for streams of prose with secrets and PII cut at random places (and an answer whose
    shown field changes from "rationale" to "position" part way), the text must be
    exactly redact() of the whole text so far."""
    import json
    import random

    from swarm.deltas import _Call
    from swarm.redact import redact

    rng = random.Random(7)
    secrets = [
        "sk-ant-api03-A1b2C3d4E5f6G7h8i9",
        "ghp_" + "a1B2" * 6,
        "mail me at ana.lopez@example.org today",
        "password = hunter2hunter2",
        "card 4111 1111 1111 1111 ok",
        "call +1 415 555 2671 now",
        "Authorization: Bearer abcdefghijklmnopqrstuvwxyz",
        "AKIAABCDEFGHIJKLMNOP",
        "eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl",
    ]
    words = "the plan keeps each change small so review stays quick and safe".split()
    for trial in range(60):
        parts = [rng.choice(words) for _ in range(rng.randint(5, 60))]
        for _ in range(rng.randint(0, 3)):
            parts.insert(rng.randint(0, len(parts)), rng.choice(secrets))
        prose = " ".join(parts)
        if trial % 3 == 0:  # structured: the shown field changes part way
            whole = json.dumps({"rationale": prose[: len(prose) // 2], "position": prose})
        else:
            whole = prose
        call = _Call("plan", "skeptic", 1, "m")
        i = 0
        while i < len(whole):
            step = rng.randint(1, 9)
            call.reader.feed(whole[i : i + step])
            i += step
            assert call.redacted() == redact(call.reader.text), (trial, call.reader.text)


# --- DeltaRelay: the engine's side -------------------------------------------------------


def _relay(stopped=lambda: False, interval=0.05):
    stored: list = []
    sent: list[list] = []
    relay = DeltaRelay(
        stored.append, sent.append, stopped, DeltaCoalescer(interval=interval, hold=0)
    )
    return relay, stored, sent


def test_the_relay_publishes_pieces_on_its_own_timer_and_stores_only_events():
    relay, stored, sent = _relay()

    async def engine():
        await asyncio.sleep(0.06)  # the calls' first words, an interval after the start
        relay.emit(piece("Rollback "))  # due: it goes at the loop's next turn, with
        relay.emit(piece("Agreed", call="c2", role="proponent"))  # what this turn brings
        assert sent == []
        await asyncio.sleep(0)
        assert [(published(out), published(out, "c2")) for out in sent] == [("Rollback ", "Agreed")]
        for word in ["is ", "untested"]:
            relay.emit(piece(word))
        await asyncio.sleep(0.12)  # the timer lets the rest out after the interval

    asyncio.run(engine())
    assert [published(out) for out in sent] == ["Rollback ", "is untested"]
    assert stored == []  # no piece reached the thread that stores events


def test_the_relay_publishes_waiting_text_before_the_event_that_follows_it():
    relay, stored, sent = _relay(interval=10)
    order: list[str] = []
    relay._put = lambda e: order.append(f"stored {e}")
    relay._publish = lambda out: order.append(f"published {published(out)}")

    async def engine():
        relay.emit(piece("First "))
        relay.emit(piece("words"))  # held: the interval is not up
        relay.emit("llm.call.done")

    asyncio.run(engine())
    assert order == ["published First words", "stored llm.call.done"]


def test_a_stopped_relay_publishes_nothing_and_close_sends_what_is_left():
    stop = {"now": False}
    relay, stored, sent = _relay(stopped=lambda: stop["now"], interval=10)

    async def engine():
        relay.emit(piece("Kept "))
        relay.emit(piece("back"))

    asyncio.run(engine())
    assert sent == []  # held: the interval is not up
    relay.close()  # after the loop closed: the timer is cancelled, the text goes
    assert [published(out) for out in sent] == ["Kept back"]
    stop["now"] = True
    relay.emit(piece("late", call="c2"))
    relay.close()
    assert len(sent) == 1


def test_unwatched_pieces_wait_unread_and_a_watcher_gets_the_call_from_its_first_word():
    c = DeltaCoalescer(interval=0, hold=0, clock=Clock())
    for word in ["Rollback ", "is "]:
        c.add(piece(word), quiet=True)
    c.add(piece("Gone ", call="c2"), quiet=True)
    assert not c.pending and c.flush(now=True) == []
    c.add(piece("Gone", call="c2", done=True), quiet=True)  # ended unwatched: forgotten
    c.add(piece("untested"))  # someone follows now
    ((_, payload),) = c.flush(now=True)
    assert (payload["call_id"], payload["text"], payload["offset"]) == (
        "c1",
        "Rollback is untested",
        0,
    )
    assert set(c._calls) == {"c1"}


def test_a_call_already_published_goes_on_to_its_end_when_its_watcher_leaves():
    c = DeltaCoalescer(interval=0, hold=0, clock=Clock())
    c.add(piece("Rollback "))
    assert published(c.flush(now=True)) == "Rollback "
    c.add(piece("is untested"), quiet=True)
    c.add(piece("", done=True), quiet=True)
    assert published(c.flush(now=True)) == "is untested"
    c.add(piece("Never read", call="c2"), quiet=True)
    c.add(piece("", call="c2", discard=True), quiet=True)
    assert c.flush(now=True) == [] and c._calls == {}  # no discard for unpublished text


def test_a_relay_nobody_watches_publishes_nothing_and_passes_events_on():
    watched = {"now": False}
    stored: list = []
    sent: list = []
    relay = DeltaRelay(
        stored.append,
        sent.append,
        lambda: False,
        DeltaCoalescer(interval=0, hold=0),
        wanted=lambda: watched["now"],
    )

    async def engine():
        relay.emit(piece("Rollback "))
        await asyncio.sleep(0.01)
        relay.emit("llm.call.started")
        assert sent == [] and stored == ["llm.call.started"]
        watched["now"] = True
        relay.emit(piece("is untested"))
        await asyncio.sleep(0.01)

    asyncio.run(engine())
    assert [published(out) for out in sent] == ["Rollback is untested"]
