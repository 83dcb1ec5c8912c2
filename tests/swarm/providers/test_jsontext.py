import pytest

from swarm.providers.jsontext import JsonTextError, json_from_text


def test_plain_json_parses():
    assert json_from_text('  {"a": [1, 2]}\n') == {"a": [1, 2]}


def test_json_fence_is_tolerated():
    text = 'Here you go:\n```json\n{"status": "ok", "n": 3}\n```\nAnything else?'
    assert json_from_text(text) == {"status": "ok", "n": 3}


def test_bare_fence_without_language_is_tolerated():
    assert json_from_text("```\n[1, 2, 3]\n```") == [1, 2, 3]


def test_json_inside_prose_is_found():
    assert json_from_text('My answer is {"x": {"y": true}} as requested.') == {"x": {"y": True}}


def test_broken_fence_falls_back_to_later_json():
    text = '```json\n{"broken": \n```\nthen {"fixed": 1}'
    assert json_from_text(text) == {"fixed": 1}


@pytest.mark.parametrize("text", ["", "   ", "no json at all", "{not: json}"])
def test_text_without_json_is_rejected(text):
    with pytest.raises(JsonTextError):
        json_from_text(text)


def test_error_message_quotes_the_start_of_the_answer():
    with pytest.raises(ValueError, match="Sorry, I cannot"):
        json_from_text("Sorry, I cannot help with that.")
