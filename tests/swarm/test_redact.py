from __future__ import annotations

import logging
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.redact import RedactingFilter, grown_clean, open_tail_start, redact

ANT_KEY = "sk-ant-api03-" + "Zx9_Qw-8" * 8
OR_KEY = "sk-or-v1-" + "0a1b2c3d" * 8
OPENAI_KEY = "sk-proj-" + "AbCdEf123456" * 3
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"


def test_emails_become_labels():
    assert redact("mail alice@example.com now") == "mail [EMAIL#1] now"


def test_phone_numbers_become_labels():
    for phone in ("+1 415 555 2671", "(415) 555-2671", "415-555-2671", "+44 20 7946 0958"):
        out = redact(f"call {phone} today")
        assert out == "call [PHONE#1] today", phone


def test_jwts_become_labels():
    assert redact(f"Authorization: {JWT}") == "Authorization: [JWT#1]"


def test_api_keys_become_labels():
    for key in (ANT_KEY, OR_KEY, OPENAI_KEY, "sk-" + "a" * 32):
        out = redact(f"use {key} please")
        assert out == "use [API_KEY#1] please", key


def test_anthropic_key_is_not_half_eaten_by_the_generic_rule():
    out = redact(f"{ANT_KEY}")
    assert out == "[API_KEY#1]"


def test_key_assignments_keep_the_name_and_drop_the_value():
    assert redact("key=hunter2hunter2") == "key=[SECRET#1]"
    assert redact('api_key: "s3cr3tvalue"') == 'api_key: "[SECRET#1]"'
    assert redact("password = correcthorse") == "password = [SECRET#1]"


def test_assignment_of_a_known_key_is_labelled_once():
    assert redact(f"ANTHROPIC_API_KEY={ANT_KEY}") == "ANTHROPIC_API_KEY=[API_KEY#1]"


def test_luhn_valid_cards_with_and_without_spaces():
    assert redact("card 4111111111111111 ok") == "card [CARD#1] ok"
    assert redact("card 4111 1111 1111 1111 ok") == "card [CARD#1] ok"
    assert redact("card 5500-0000-0000-0004 ok") == "card [CARD#1] ok"


def test_non_luhn_sixteen_digits_are_left_alone():
    for text in ("order 4111111111111112 shipped", "order 4111 1111 1111 1112 shipped"):
        assert redact(text) == text


def test_same_value_gets_the_same_label_and_others_the_next_number():
    text = "a@x.io b@x.io a@x.io"
    assert redact(text) == "[EMAIL#1] [EMAIL#2] [EMAIL#1]"


def test_nested_structures_are_walked_and_share_labels():
    value = {
        "who": "a@x.io",
        "list": ["a@x.io", {"deep": ("b@x.io", 3)}],
        "n": 4,
        "ok": True,
        "none": None,
    }
    out = redact(value)
    assert out == {
        "who": "[EMAIL#1]",
        "list": ["[EMAIL#1]", {"deep": ("[EMAIL#2]", 3)}],
        "n": 4,
        "ok": True,
        "none": None,
    }
    assert value["who"] == "a@x.io"  # the input is not modified


def test_ordinary_text_is_untouched():
    text = "Version 1.2.3 released on 2024-05-01; 3 files changed, 120 insertions."
    assert redact(text) == text


def test_logging_filter_redacts_the_message():
    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "key %s for %s", (ANT_KEY, "a@x.io"), None
    )
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == "key [API_KEY#1] for [EMAIL#1]"


_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " .,:;=@+-_()'\"\n", max_size=80)
_KEY_BODY = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=20, max_size=60)


@settings(max_examples=300, deadline=None)
@given(before=_TEXT, body=_KEY_BODY, after=_TEXT)
def test_a_generated_anthropic_key_never_survives(before, body, after):
    key = "sk-ant-" + body
    out = redact(before + key + after)
    assert key not in out


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _TEXT,
        st.builds(lambda a, b: a + ANT_KEY + " " + b + " x@y.io 4111 1111 1111 1111", _TEXT, _TEXT),
    )
)
def test_redaction_is_idempotent(text):
    once = redact(text)
    assert redact(once) == once


def test_digits_after_a_decimal_point_are_not_a_card():
    # A Celery log line: the task's duration is not a card, however Luhn-lucky its digits.
    line = "Task runs.tasks.stage_execute_task[ab12] succeeded in 0.4111111111111111s: None"
    assert redact(line) == line
    assert redact("took 12.5500000000000004 s") == "took 12.5500000000000004 s"


def test_digits_inside_a_longer_token_are_not_a_card():
    for text in ("sha 4111111111111111abc", "id-4111111111111111", "v4111111111111111"):
        assert redact(text) == text


def test_cards_in_groups_and_amex_are_still_found():
    assert redact("amex 3782 822463 10005 ok") == "amex [CARD#1] ok"
    assert redact("(4111111111111111)") == "([CARD#1])"
    assert redact("card: 4111-1111-1111-1111.") == "card: [CARD#1]."


def test_a_final_text_is_searched_for_whole_matches_only():
    # A streamed text's open tail is where a secret could still begin; once the text is
    # final, only whether a pattern matches it counts.
    text = "the plan is fine, and the key is sk-ant-abc"  # too short to be a key yet
    assert grown_clean(text, 0) == text.index("sk-ant-")
    assert grown_clean(text, 0, final=True) == len(text)
    leaked = text + "defghijklmnopqrstuvwxyz"
    assert grown_clean(leaked, 0) is None
    assert grown_clean(leaked, 0, final=True) is None
    assert grown_clean(leaked, text.index("sk-ant-"), final=True) is None


@given(st.text(alphabet="abc sk-ant_@.0123456789=:", max_size=80))
def test_a_final_text_said_clean_is_one_redaction_leaves_as_it_is(text):
    # (The other way need not hold: a card-like number that fails its checksum matches a
    # pattern and is still kept.)
    if grown_clean(text, 0, final=True) is not None:
        assert redact(text) == text


_SECRETISH = st.text(alphabet="abcyJ sk-ant_or@.0123456789=:ghpBearer\"'+()", max_size=90)


@settings(max_examples=300)
@given(_SECRETISH)
def test_where_a_clean_text_could_still_become_a_secret_is_its_open_tail(text):
    # The coalescer takes grown_clean's answer for the open tail when it lies in the
    # window, instead of searching the tail again.
    first = grown_clean(text, 0)
    if first is not None and first >= len(text) - 48:
        assert first == open_tail_start(text, 48)


def _grown_clean_reference(text: str, since: int) -> int | None:
    """grown_clean as first written: every pattern searched from `since`, no shortcut."""
    from swarm.redact import _EVERY_PATTERN, _partial_patterns

    if any(p.search(text, since) for p in _EVERY_PATTERN):
        return None
    starts = [m.start() for p in _partial_patterns() if (m := p.search(text, since, partial=True))]
    return min(starts, default=len(text))


@settings(max_examples=500)
@given(
    st.text(alphabet="abcyJ sk-ant_orKſ@.0123456789=:ghpBearer\"'+()", max_size=90),
    st.sampled_from(["", "api_", "api_key", "my secret", "PASSW", "token =", "ke", "x", " "]),
    st.integers(min_value=0, max_value=100),
)
def test_the_shortcuts_find_what_every_pattern_searched_in_full_finds(text, tail, since):
    # Skipping the assignment pattern where none of its words occurs, and starting its
    # partial search at the last name, must change no answer.
    text += tail
    since = min(since, len(text))
    assert grown_clean(text, since) == _grown_clean_reference(text, since)
