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


def test_an_invocation_progresses_live_on_its_page(page, slow_server):
    """Nothing polls the page: what changes while it runs comes over its event stream."""
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    login(page, slow_server)
    page.goto(slow_server.base_url + "/prompts/")
    form = page.locator("form[action$='/prompts/ask/']")
    form.get_by_label("Prompt").fill("Plan, write and review a rounding fix for total()")
    form.get_by_label("Agent").select_option("agno")
    form.get_by_role("button", name="Ask").click()
    page.wait_for_url(re.compile(r"/prompts/\d+/$"))
    progress = page.locator("#prompt-progress")
    # Three steps of 1.2 s each: the page shows the later ones arrive while it runs.
    expect(progress).to_contain_text("as coder", timeout=15_000)
    expect(page.locator("#prompt-main .status")).to_have_text("Running")
    expect(page.locator("#prompt-response")).not_to_be_empty()
    screenshot(page, "prompt-live")
    expect(page.locator("#prompt-main .status")).to_have_text("OK", timeout=30_000)
    expect(progress).to_contain_text("as reviewer")
    expect(progress).to_contain_text("finished: OK")
    assert any(re.search(r"/api/prompts/\d+/events\?after=\d+$", url) for url in requests)
    assert page.errors == []
    screenshot(page, "prompt-live-finished")
