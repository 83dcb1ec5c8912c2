"""Fixtures of the terminal UI tests."""

from __future__ import annotations

import pytest
from rich.console import Console


def plain(renderable) -> str:
    """What a widget's content reads as, without styles."""
    console = Console(width=200, record=True, color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


@pytest.fixture
def text_of():
    def read(widget) -> str:
        return plain(widget.content)

    return read
