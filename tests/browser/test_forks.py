"""Attempts and forks in a real browser: a blocked stage retried with a note keeps its first
attempt, and the run page shows the difference; the run forked from a later stage with
another model links both ways and compares the stage with its parent's. Screenshots:
stage-compare-attempts.png, fork-compare-parent.png (the compare sections)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login, screenshot

pytestmark = pytest.mark.browser


def _run_id(page) -> int:
    return int(page.url.split("?")[0].rstrip("/").rsplit("/", 1)[1])


def test_a_retried_stage_and_a_fork_show_their_artifacts_diff(page, tekton_server):
    login(page, tekton_server)
    launcher = page.locator("#new-run")
    if launcher.get_attribute("open") is None:
        launcher.locator("summary").click()
    form = page.locator("#launcher")
    form.get_by_label("Goal").fill("Greet the user by name [offline:block=plan]")
    form.get_by_label("Repository").fill(str(tekton_server.repo))
    form.get_by_label("To stage").select_option("research")
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    parent_id = _run_id(page)

    title = page.locator("#run-title .status")
    expect(title).to_have_text("Blocked", timeout=60_000)
    page.goto(f"{tekton_server.base_url}/runs/{parent_id}/?stage=plan")
    page.get_by_label("Note for the retry").fill("Name the milestones after the greeting")
    page.get_by_role("button", name="Retry with note").click()
    expect(title).to_have_text("Succeeded", timeout=60_000)

    page.goto(f"{tekton_server.base_url}/runs/{parent_id}/?stage=plan")
    compare = page.locator("#compare")
    compare.get_by_label("This stage's artifact against").select_option(label="attempt 1 (blocked)")
    compare.get_by_role("button", name="Show the difference").click()
    expect(compare.locator(".compare-sides")).to_contain_text("attempt 1 (blocked)")
    expect(compare.locator("tr.dl-add").first).to_be_visible()
    expect(compare.locator("tr.dl-del").first).to_be_visible()
    compare.screenshot(
        path=str(screenshot(page, "stage-compare-attempts-page")).replace("-page", "")
    )

    page.locator(".fork-box summary").click()
    fork_form = page.locator(".fork-form")
    fork_form.get_by_label("From stage").select_option("research")
    fork_form.get_by_label("Model override").fill("offline/other-model")
    fork_form.get_by_role("button", name="Fork run").click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    fork_id = _run_id(page)
    assert fork_id != parent_id
    expect(page.locator("#lineage .fork-of")).to_contain_text(
        f"Forked at research from run #{parent_id}"
    )
    expect(title).to_have_text("Succeeded", timeout=60_000)
    expect(page.locator("#stage-row-plan .status")).to_have_text("skipped")

    page.goto(f"{tekton_server.base_url}/runs/{fork_id}/?stage=research")
    compare = page.locator("#compare")
    compare.get_by_label("This stage's artifact against").select_option(
        label=f"parent run {parent_id}"
    )
    compare.get_by_role("button", name="Show the difference").click()
    expect(compare.locator("tr.dl-add").first).to_be_visible()
    compare.screenshot(path=str(screenshot(page, "fork-compare-parent-page")).replace("-page", ""))

    page.goto(f"{tekton_server.base_url}/runs/{parent_id}/")
    expect(page.locator("#lineage .forks")).to_contain_text(f"run #{fork_id}")
