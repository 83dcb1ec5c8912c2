"""The interface's plain data: messages as text or blocks, and what a completion hands on."""

import dataclasses

import pytest

from swarm.providers.base import (
    Completion,
    CompletionRequest,
    Message,
    TextBlock,
    ToolCall,
    ToolResult,
    Usage,
    message_from_dict,
    message_to_dict,
)


def test_a_plain_message_is_unchanged():
    m = Message("user", "some text")
    assert m.content == "some text"
    assert m.text == "some text"
    assert (m.tool_calls, m.tool_results) == ((), ())
    assert message_to_dict(m) == {"role": "user", "content": "some text"}


def test_blocks_given_as_a_list_become_a_tuple():
    m = Message("user", [TextBlock("a"), ToolResult("c1", "r")])
    assert isinstance(m.content, tuple)
    assert m.text == "a"
    assert m.tool_results == (ToolResult("c1", "r"),)


def test_block_messages_round_trip_through_plain_data():
    m = Message(
        "assistant",
        (TextBlock("Let me look."), ToolCall("c1", "read_file", {"path": "a.py", "lines": [1, 2]})),
    )
    data = message_to_dict(m)
    assert data["content"][1] == {
        "type": "tool_call",
        "id": "c1",
        "name": "read_file",
        "arguments": {"path": "a.py", "lines": [1, 2]},
    }
    assert message_from_dict(data) == m
    results = Message("user", (ToolResult("c1", "boom", is_error=True),))
    assert message_from_dict(message_to_dict(results)) == results


def test_unknown_block_type_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown message block type 'image'"):
        message_from_dict({"role": "user", "content": [{"type": "image"}]})


def test_completion_hands_on_its_tool_calls_as_the_next_assistant_turn():
    call = ToolCall("c1", "read_file", {"path": "a.py"})
    done = Completion("Reading.", None, Usage(), 0.0, 0.0, "p", "m", tool_calls=(call,))
    assert done.assistant_message() == Message("assistant", (TextBlock("Reading."), call))
    silent = dataclasses.replace(done, text="")
    assert silent.assistant_message() == Message("assistant", (call,))
    plain = Completion("hi", None, Usage(), 0.0, 0.0, "p", "m")
    assert plain.assistant_message() == Message("assistant", "hi")


def test_the_stream_callback_is_not_part_of_a_requests_identity():
    a = CompletionRequest(model="m/x", messages=(Message("user", "hi"),))
    b = dataclasses.replace(a, on_delta=print)
    assert a == b
    assert "on_delta" not in repr(b)


def test_a_negative_cache_prefix_is_refused():
    with pytest.raises(ValueError, match="cache_prefix must be >= 0"):
        CompletionRequest(model="m/x", messages=(), cache_prefix=-1)


def test_uncached_input_tokens():
    assert (
        Usage(1000, 5, cached_input_tokens=700, cache_write_tokens=200).uncached_input_tokens == 100
    )
    assert Usage(10, 5, cached_input_tokens=50).uncached_input_tokens == 0
