"""The run page shows each running agent's words as they stream, in its card with a typing
indicator, and the stored message takes the card's place when the call ends."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import launch_run, login, screenshot

pytestmark = pytest.mark.browser


def test_agents_text_grows_in_its_card_before_the_call_ends(page, slow_server):
    login(page, slow_server)
    launch_run(page, slow_server, "Explain the order total rounding", stage_to="plan")

    live = page.locator("#live-messages article.msg-live")
    expect(live.first).to_be_visible(timeout=20_000)
    expect(live.first.locator(".typing")).to_be_visible()
    text = live.first.locator(".live-text")
    # The readable part of the answer (its position), not the JSON the model writes.
    expect(text).to_have_text(re.compile(r"^\[offline\] \w+, round opening: "))
    assert '{"' not in (text.text_content() or "")
    first = len(text.text_content() or "")
    # Still the same call, a piece later: the text grew in place.
    expect(text).not_to_have_text(text.text_content() or "", timeout=5_000)
    assert len(text.text_content() or "") > first
    assert page.locator("#stage-panel article.msg[data-role]").count() == 0
    screenshot(page, "run-streaming", full_page=False)

    # When the calls end, the stored messages replace the streaming cards.
    stored = page.locator('#stage-panel article.msg[data-role="proponent"]')
    expect(stored.first).to_be_visible(timeout=20_000)
    expect(page.locator("#live-messages article.msg-live.role-proponent")).to_have_count(0)
    # Leave nothing running for the other tests sharing the database.
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-header .status")).to_have_text("Cancelled", timeout=20_000)
