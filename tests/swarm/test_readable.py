"""ReadableText: the field a stored card shows, decoded from an answer's JSON while it
streams, whatever the pieces cut; plain answers pass as they are."""

import json

import pytest

from swarm.readable import ReadableText, answer_readable


def streamed(text: str, size: int) -> list[str]:
    """What `text` reads as after each piece of `size` characters."""
    reader = ReadableText()
    return [reader.feed(text[i : i + size]) for i in range(0, len(text), size)]


ANSWER = {
    "score": {"correctness": 0.9, "note": 'a "position": trap'},
    "position": 'Ship it: the "retry" path\nis tested \u00e9t\u00e9 \U0001f680 \\ done',
    "checks": ["position", {"rationale": "nested, never shown"}],
    "rationale": "shown only without a position",
}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 10_000])
@pytest.mark.parametrize("ascii_only", [True, False])
def test_every_cut_of_the_answer_reads_as_a_growing_prefix_of_its_position(size, ascii_only):
    # ensure_ascii writes \uXXXX escapes (the emoji as a surrogate pair): cuts fall inside
    # escapes, between a backslash and its letter, and between the pair's two halves.
    text = json.dumps(ANSWER, ensure_ascii=ascii_only)
    seen = streamed(text, size)
    assert seen[-1] == ANSWER["position"] == answer_readable(ANSWER)
    # Every step is a prefix of the final text: no raw escape, no half character shown.
    for before, after in zip(seen, seen[1:], strict=False):
        assert after.startswith(before)


def test_a_value_cut_mid_escape_waits_for_the_rest():
    reader = ReadableText()
    assert reader.feed('{"position": "caf') == "caf"
    assert reader.feed("\\") == "caf"
    assert reader.feed("u00") == "caf"
    assert reader.feed("e9 \\") == "café "
    assert reader.feed('"ok\\"') == 'café "ok"'
    assert reader.feed("\\ud83d") == 'café "ok"'  # half a surrogate pair is no character
    assert reader.feed("\\ude80!") == 'café "ok"\U0001f680!'


def test_a_key_split_across_pieces_and_the_mediators_rationale():
    reader = ReadableText()
    for piece in ['{"artifact": {"goals": ["x"], "position": "no"}, "ratio', "nale", '": "Agreed']:
        reader.feed(piece)
    assert reader.text == "Agreed"  # the nested "position" is not the answer's
    assert answer_readable({"artifact": {}, "rationale": "Agreed"}) == "Agreed"


def test_until_the_field_begins_nothing_shows():
    reader = ReadableText()
    assert reader.feed('{"score": {"a": 1}, "checks": ["pos') == ""
    assert reader.feed('ition"], "dissent": null, "position": ') == ""
    assert reader.feed('"now"') == "now"


@pytest.mark.parametrize(
    "text", ["Plain words {not json}", "  indented answer", "`code` first, then words"]
)
def test_text_that_is_not_a_json_object_passes_as_it_is(text):
    assert streamed(text, 3)[-1] == text


def test_a_json_fence_is_skipped():
    text = '```json\n{"position": "fenced"}\n```'
    assert streamed(text, 2)[-1] == "fenced"
