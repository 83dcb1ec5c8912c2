"""The Prompts page in a real browser: ask, watch it fill in, read it, ask again; a
planted key never shows (issue 12)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login, screenshot

pytestmark = pytest.mark.browser

KEY = "sk-ant-api03-PLANTEDsecretKEY0123456789abcdef"


def test_ask_read_and_ask_again(page, tekton_server):
    login(page, tekton_server)
    page.get_by_role("link", name="Prompts").click()
    expect(page.get_by_role("heading", name="Prompts", exact=True)).to_be_visible()
    form = page.locator("form[action$='/prompts/ask/']")
    form.get_by_label("Prompt").fill(f"Fix the failing test in src/app.py; the key is {KEY}")
    form.get_by_label("Context").fill("Traceback: AssertionError in test_total")
    form.get_by_role("button", name="Ask").click()
    page.wait_for_url(re.compile(r"/prompts/\d+/$"))
    expect(page.locator("#prompt-main .status")).to_have_text("OK", timeout=30_000)
    expect(page.locator("#prompt-main")).to_contain_text("intent code")
    expect(page.locator("#response-title + .goal-text")).to_contain_text("[offline]")
    assert KEY not in page.content()
    screenshot(page, "prompt-detail")

    page.get_by_role("button", name="Ask again").click()
    page.wait_for_url(re.compile(r"/prompts/\d+/$"))
    expect(page.locator("#prompt-main .status")).to_have_text("OK", timeout=30_000)
    page.get_by_role("link", name="← All prompts").click()
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    assert KEY not in page.content()
    screenshot(page, "prompts")
    assert page.errors == []
