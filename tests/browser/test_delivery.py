"""The run's change in a real browser: the branch, its base and head, the test evidence,
the commands to copy and the patch and bundle downloads; the repository page's open run
branches. Screenshots: run-page-with-change.png (the whole page), run-change.png (the
change card), repositories-branches.png."""

from __future__ import annotations

import re
import subprocess

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import launch_run, login, screenshot

pytestmark = pytest.mark.browser


def test_a_finished_run_shows_its_branch_evidence_and_how_to_take_it(page, tekton_server):
    login(page, tekton_server)
    run_id = launch_run(page, tekton_server, "Document the order total")

    card = page.locator("#delivery")
    # The card polls while the run is live and settles once it ends.
    expect(card.locator(".verdict .status")).to_have_text("ship", timeout=90_000)
    branch = card.locator("dl.facts dd code").first.inner_text()
    assert re.fullmatch(rf"tekton/run-{run_id}-[0-9a-f]{{8}}", branch)
    head = subprocess.run(
        ["git", "rev-parse", branch], cwd=tekton_server.repo, capture_output=True, text=True
    ).stdout.strip()
    expect(card.locator("dl.facts")).to_contain_text(head[:12])
    expect(card.locator("#cmd-merge")).to_have_text(f"git merge {branch}")
    expect(card.locator("#cmd-diff")).to_have_text(
        re.compile(rf"^git diff [0-9a-f]{{40}}\.\.{branch}$")
    )
    expect(card.locator("table.totals tbody tr")).to_have_count(2)
    expect(card.locator("table.totals tbody tr").nth(1)).to_contain_text("1")
    expect(card).to_contain_text("Newly failing 0")

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    card.locator('button[data-copy="cmd-merge"]').click()
    expect(card.locator('button[data-copy="cmd-merge"]')).to_have_class(re.compile("copied"))
    assert page.evaluate("navigator.clipboard.readText()") == f"git merge {branch}"

    with page.expect_download() as patch_download:
        card.get_by_role("link", name="Download the patch").click()
    patch = patch_download.value
    assert patch.suggested_filename.endswith(".patch")
    assert "diff --git" in open(patch.path(), encoding="utf-8").read()
    with page.expect_download() as bundle_download:
        card.get_by_role("link", name="Download a git bundle").click()
    assert open(bundle_download.value.path(), "rb").read(15) == b"# v2 git bundle"
    card.scroll_into_view_if_needed()
    card.screenshot(path=str(screenshot(page, "run-page-with-change").with_name("run-change.png")))

    page.goto(tekton_server.base_url + "/repo/")
    table = page.locator("table.branches")
    row = table.locator("tbody tr", has_text=branch)
    expect(row).to_contain_text(f"#{run_id}")
    expect(row.locator(".status").first).to_have_text("succeeded")
    expect(row).to_contain_text("ship")
    # The verdict the run's review gave (the offline backend's varies with the prompt).
    expect(row).to_contain_text(re.compile(r"review: (ok|revise|block)"))
    screenshot(page, "repositories-branches")
