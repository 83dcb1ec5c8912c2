"""Attempts and forks in a real browser: a blocked stage retried with a note keeps its first
attempt, and the run page shows the difference; the run forked from a later stage with
another model links both ways and compares the stage with its parent's; a code stage
compares the two patches per file. Screenshots: stage-compare-attempts.png,
fork-compare-parent.png, code-compare-attempts.png (the compare sections)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PROJECT_DIR, launch_run, login, screenshot

pytestmark = pytest.mark.browser


def _run_id(page) -> int:
    return int(page.url.split("?")[0].rstrip("/").rsplit("/", 1)[1])


def test_a_retried_stage_and_a_fork_show_their_artifacts_diff(page, tekton_server):
    login(page, tekton_server)
    parent_id = launch_run(
        page, tekton_server, "Greet the user by name [offline:block=plan]", stage_to="research"
    )

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


# An earlier attempt of the code stage, as a retry would have set it aside: its patch titles
# the notes' backlog differently, touches src/app.py too, and its risk note is another.
SET_ASIDE = """
from runs.models import Artifact, StageAttempt
now = Artifact.objects.get(run_id={run_id}, stage="code", kind="json").content
extra = (
    "--- a/src/app.py\\n+++ b/src/app.py\\n@@ -1,2 +1,2 @@\\n def total(prices):\\n"
    "-    return round(sum(prices), 2)\\n+    return sum(prices)\\n"
)
old = dict(
    now,
    diff=now["diff"].replace("## Backlog", "## Tasks") + extra,
    risk_notes=["an earlier attempt"],
)
StageAttempt.objects.create(
    run_id={run_id}, stage="code", number=1, status="blocked", reason="a person retried it",
    artifact=old,
)
"""


def test_a_code_stage_compares_the_two_patches_per_file(page, tekton_server):
    login(page, tekton_server)
    run_id = launch_run(page, tekton_server, "Greet the user by name", stage_to="code")
    expect(page.locator("#run-title .status")).to_have_text("Succeeded", timeout=90_000)
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SET_ASIDE.format(run_id=run_id)],
        cwd=PROJECT_DIR,
        env=tekton_server.env,
        check=True,
    )

    page.goto(f"{tekton_server.base_url}/runs/{run_id}/?stage=code")
    compare = page.locator("#compare")
    compare.get_by_label("This stage's artifact against").select_option(label="attempt 1 (blocked)")
    compare.get_by_role("button", name="Show the difference").click()
    files = compare.locator(".diff-file")
    expect(files.nth(0).locator("summary")).to_contain_text("changed on both sides, differently")
    expect(files.nth(0)).to_contain_text("## Tasks")
    expect(files.nth(1).locator("summary")).to_contain_text("src/app.py only in attempt 1")
    # The rest of the artifact: the risk notes, and no patch in it.
    expect(files.nth(2).locator("summary")).to_contain_text("code.json")
    expect(files.nth(2)).to_contain_text("an earlier attempt")
    expect(files.nth(2)).not_to_contain_text("@@ -0,0")
    compare.screenshot(
        path=str(screenshot(page, "code-compare-attempts-page")).replace("-page", "")
    )
