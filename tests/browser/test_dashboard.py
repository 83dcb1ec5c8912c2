"""The dashboard in a real browser: log in, launch, watch the timeline live, read a
transcript, an artifact and a diff, approve a blocked stage, edit a profile, run the
checks; untrusted text stays text. Screenshots of every page go to docs/screenshots/."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import launch_run, launcher_open, login, screenshot

pytestmark = pytest.mark.browser

FINAL_TIMEOUT = 60_000


def test_launch_watch_live_and_read_a_stage(page, tekton_server):
    login(page, tekton_server)
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()

    # The explain preview: what will run, nothing created.
    form = launcher_open(page)
    form.get_by_label("Goal").fill("Add an order total endpoint")
    form.get_by_label("Repository").fill(str(tekton_server.repo))
    page.get_by_role("button", name="Explain").click()
    expect(page.get_by_role("heading", name="What will run")).to_be_visible()
    expect(page.locator(".explain")).to_contain_text("quorum 0.67")
    screenshot(page, "launcher-explain")

    run_id = launch_run(page, tekton_server, "Add an order total endpoint")
    # A marker on window survives only if the page never reloads.
    page.evaluate("window.__tektonMarker = 'still here'")
    navigations = page.evaluate("performance.getEntriesByType('navigation').length")
    expect(page.locator("#run-live")).to_have_attribute("data-conn", re.compile("live|finished"))
    expect(page.locator("#stage-row-plan")).to_have_class(re.compile("step-(running|succeeded)"))
    expect(page.locator("#stage-row-release")).to_have_class(
        re.compile("step-succeeded"), timeout=FINAL_TIMEOUT
    )
    expect(page.locator("#run-header .status")).to_have_text("Succeeded")
    assert page.evaluate("window.__tektonMarker") == "still here"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == navigations
    assert page.url.endswith(f"/runs/{run_id}/")
    screenshot(page, "run-finished")

    # The code stage: transcript, artifact and diff.
    page.locator("#stage-row-code a").click()
    expect(page.locator("#stage-panel")).to_have_attribute("data-stage", "code")
    expect(page.locator("#stage-row-code a")).to_have_attribute("aria-current", "true")
    transcript = page.locator("#transcript")
    expect(transcript.locator("details.round summary").first).to_contain_text("Opening")
    transcript.locator("details.round summary").first.click()
    expect(transcript.locator("article.role-skeptic").first).to_be_visible()
    expect(page.locator("#artifact .doc")).to_contain_text("Files changed")
    page.locator("#artifact .raw-json summary").click()
    expect(page.locator("#artifact .raw-json pre")).to_contain_text('"confidence"')
    diff = page.locator("#diff")
    expect(diff.locator(".diff-file").first).to_be_visible()
    expect(diff.locator(".diff-file summary .add").first).to_have_text(re.compile(r"\+\d+"))
    expect(diff.locator("tr.dl-add").first).to_be_visible()
    screenshot(page, "run-code-stage")

    # The list shows the run with its strip.
    page.goto(tekton_server.base_url + "/")
    row = page.locator(f"#run-row-{run_id}")
    expect(row.locator(".status")).to_have_text("Succeeded")
    expect(row.locator(".step-succeeded")).to_have_count(9)


def test_blocked_run_is_approved_from_the_page_and_finishes(page, tekton_server):
    login(page, tekton_server)
    # A long unbroken token in the goal reaches every agent's words (the offline backend
    # quotes it): it must wrap inside its transcript card.
    token = "https://example.test/" + "x" * 180
    run_id = launch_run(page, tekton_server, f"Harden the checkout {token} [offline:block=review]")
    expect(page.locator("#stage-row-review")).to_have_class(
        re.compile("step-blocked"), timeout=FINAL_TIMEOUT
    )
    expect(page.locator("#run-header")).to_contain_text("Waiting for a person")
    # An element the browser gave a style attribute (as a resized textarea gets) is swapped
    # by htmx next: its settle must not copy the style over, which the CSP would refuse.
    page.evaluate("document.getElementById('stage-panel').style.minHeight = '1px'")
    page.locator("#stage-row-review a").click()
    expect(page.locator("#stage-panel")).to_contain_text("This stage is blocked and waits for you")
    expect(page.locator("#stage-panel .reason")).to_contain_text("quorum")
    expect(page.locator("#stage-row-review")).to_contain_text(
        re.compile(r"quorum 0\.\d\d of 0\.67")
    )
    overflowing = page.evaluate(
        "[...document.querySelectorAll('article.msg')]"
        ".filter(el => el.scrollWidth > el.clientWidth + 1).length"
    )
    assert page.locator("article.msg").count() == 10 and overflowing == 0
    # One confidence: the timeline's is the artifact's.
    timeline = page.locator("#stage-row-review").inner_text()
    conf = re.search(r"conf\. (0\.\d\d)", timeline).group(1)
    expect(page.locator("#artifact meter")).to_have_text(conf)
    screenshot(page, "run-blocked")

    page.get_by_role("button", name="Approve anyway").click()
    expect(page.locator(".message.success")).to_contain_text("Stage review approved")
    expect(page.locator("#stage-row-release")).to_have_class(
        re.compile("step-succeeded"), timeout=FINAL_TIMEOUT
    )
    expect(page.locator("#stage-row-review .status")).to_have_text("succeeded")
    assert page.url.endswith(f"/runs/{run_id}/?stage=review")

    # The repository page lists the repository and its state.
    page.goto(tekton_server.base_url + "/repo/")
    expect(page.locator(".repo-head")).to_contain_text(str(tekton_server.repo))
    expect(page.locator(".repo")).to_contain_text("dirty: 1 changed")
    expect(page.locator(".repo")).to_contain_text("Initial shop")
    screenshot(page, "repositories")


def test_untrusted_text_is_shown_as_text_and_runs_nothing(page, tekton_server):
    login(page, tekton_server)
    page.evaluate("window.__pwned = 0")
    goal = 'Render <script>window.__pwned = 1</script> and <img src=x onerror="window.__pwned = 2">'
    launch_run(page, tekton_server, goal)
    expect(page.locator("#stage-row-plan")).to_have_class(
        re.compile("step-succeeded"), timeout=FINAL_TIMEOUT
    )
    expect(page.locator("#run-header .goal-text")).to_have_text(goal)
    page.locator("#stage-row-plan a").click()
    expect(page.locator("#artifact .doc")).to_contain_text("<script>window.__pwned = 1</script>")
    page.locator("#artifact .raw-json summary").click()
    expect(page.locator("#artifact .raw-json pre")).to_contain_text("onerror=")
    assert page.locator("#main script").count() == 0
    assert page.locator("#main img").count() == 0
    assert page.evaluate("window.__pwned === undefined || window.__pwned === 0")
    page.goto(page.url)  # a full load of the same text
    assert page.evaluate("typeof window.__pwned") == "undefined"


def test_profile_edit_refuses_a_bad_quorum_beside_the_field(page, tekton_server):
    login(page, tekton_server)
    page.goto(tekton_server.base_url + "/config/")
    screenshot(page, "profiles")
    page.get_by_role("link", name="diamond-v5").click()
    quorum = page.get_by_label("Quorum")
    original = quorum.input_value()
    quorum.fill("1.5")
    quorum.blur()  # inline validation on change
    expect(page.locator("#err-quorum")).to_have_text("quorum must be in (0, 1], got 1.5")
    page.get_by_role("button", name="Save profile").click()
    expect(page.locator("#err-quorum")).to_have_text("quorum must be in (0, 1], got 1.5")
    expect(page.get_by_label("Quorum")).to_have_value("1.5")
    screenshot(page, "profile-edit-error")
    try:
        page.get_by_label("Quorum").fill("0.75")
        page.get_by_role("button", name="Save profile").click()
        expect(page.locator(".message.success")).to_have_text("Profile diamond-v5 saved.")
        expect(page.get_by_label("Quorum")).to_have_value("0.75")
    finally:
        # The server is shared by the module: later runs must see the default quorum.
        page.get_by_label("Quorum").fill(original)
        page.get_by_role("button", name="Save profile").click()
        expect(page.locator(".message.success")).to_have_text("Profile diamond-v5 saved.")


def test_checks_page_and_rerun(page, tekton_server):
    login(page, tekton_server)
    page.goto(tekton_server.base_url + "/system/checks/")
    expect(page.get_by_role("heading", name="System checks")).to_be_visible()
    rows = page.locator("table.checks tbody tr")
    assert rows.count() > 3
    first_time = page.locator("#checks time").get_attribute("datetime")
    page.get_by_role("link", name="Re-run checks").click()
    expect(page.locator("#checks time")).not_to_have_attribute("datetime", first_time)
    screenshot(page, "checks")
    # By now the earlier tests have left a few runs behind.
    page.goto(tekton_server.base_url + "/")
    expect(page.locator("table.runs tbody tr").first).to_be_visible()
    screenshot(page, "runs-list")


def test_narrow_window_stacks_the_run_page(browser, tekton_server):
    context = browser.new_context(viewport={"width": 420, "height": 900})
    page = context.new_page()
    try:
        login(page, tekton_server)
        screenshot(page, "runs-list-narrow", full_page=False)
        page.locator("#runs-table a").first.click()
        expect(page.locator("#stage-list")).to_be_visible()
        timeline = page.locator(".timeline").bounding_box()
        panel = page.locator("#stage-panel").bounding_box()
        assert panel["y"] >= timeline["y"] + timeline["height"]  # stacked, not side by side
        assert page.evaluate("document.documentElement.scrollWidth") <= 420
        screenshot(page, "run-narrow")
    finally:
        context.close()


def test_login_page(browser, tekton_server):
    context = browser.new_context(viewport={"width": 1280, "height": 700})
    page = context.new_page()
    try:
        page.goto(tekton_server.base_url + "/runs/1/")
        expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/runs/1/"))
        page.get_by_label("Username").fill("ada")
        page.get_by_label("Password").fill("wrong")
        page.get_by_role("button", name="Log in").click()
        expect(page.locator(".form-errors")).to_contain_text("correct username and password")
        screenshot(page, "login")
    finally:
        context.close()


def test_a_dropped_connection_resumes_from_the_last_applied_seq(browser, tekton_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # Keeps a handle on htmx's socket wrapper so the test can drop the connection.
    context.add_init_script(
        "document.addEventListener('htmx:wsOpen', function (e) {"
        " window.__tektonSocket = e.detail.socketWrapper; });"
    )
    page = context.new_page()
    try:
        login(page, tekton_server)
        launch_run(page, tekton_server, "Add a refunds report")
        expect(page.locator("#stage-row-plan_update")).to_have_class(
            re.compile("step-(running|succeeded)"), timeout=FINAL_TIMEOUT
        )
        seq = int(page.locator("#run-seq").get_attribute("data-seq"))
        with page.expect_websocket() as reconnected:
            page.evaluate("window.__tektonSocket.reconnect()")
        query = parse_qs(urlsplit(reconnected.value.url).query)
        resumed_after = int(query["after"][0])
        assert resumed_after >= seq > 0
        assert query["deltas"] == ["1"]  # the streamed text keeps coming after a reconnect
        expect(page.locator("#stage-row-release")).to_have_class(
            re.compile("step-succeeded"), timeout=FINAL_TIMEOUT
        )
        expect(page.locator("#run-header .status")).to_have_text("Succeeded")
    finally:
        context.close()


def test_webhooks_page_creates_a_hook_and_shows_its_secret_once(page, tekton_server):
    login(page, tekton_server)
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    page.get_by_label("Name").fill("On-call <b>pager</b>")
    page.get_by_label("Webhook URL").fill("http://127.0.0.1:9/tekton")
    page.get_by_label("stage.blocked").check()
    page.get_by_role("button", name="Create hook").click()
    secret = page.locator("code.secret")
    expect(secret).to_have_text(re.compile(r"^whsec_\S{40,}$"))
    value = secret.inner_text()
    # Escaped, not markup; the htmx swap kept the page (no reload).
    expect(page.locator("table.plain")).to_contain_text("On-call <b>pager</b>")
    screenshot(page, "webhooks")
    page.reload()
    expect(page.locator("code.secret")).to_have_count(0)
    assert value not in page.content()
    page.get_by_role("button", name="Pause").click()
    expect(page.locator(".form-errors")).to_contain_text("is paused: paused by its owner")


def test_a_run_blocked_by_its_budget_is_raised_and_retried_from_the_page(page, tekton_server):
    import subprocess
    import sys

    from tests.browser.conftest import PROJECT_DIR, _clean_env

    # A profile whose token budget cannot cover the first call.
    code = (
        "from config_profiles.models import Profile; d = Profile.objects.get(name='diamond-v5'); "
        "Profile.objects.get_or_create(name='tight', defaults={'stage_models': d.stage_models, "
        "'budget_tokens': 1000})"
    )
    subprocess.run(
        [sys.executable, str(PROJECT_DIR / "manage.py"), "shell", "-c", code],
        cwd=PROJECT_DIR,
        env=_clean_env(TEKTON_DATA_DIR=str(tekton_server.data_dir)),
        check=True,
    )
    login(page, tekton_server)
    page.goto(tekton_server.base_url + "/")
    form = launcher_open(page)
    form.get_by_label("Goal").fill("Add a receipt endpoint")
    form.get_by_label("Repository").fill(str(tekton_server.repo))
    form.get_by_label("Profile").select_option("tight")
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    expect(page.locator("#stage-row-plan")).to_have_class(
        re.compile("step-blocked"), timeout=FINAL_TIMEOUT
    )
    page.locator("#stage-row-plan a").click()
    panel = page.locator("#stage-panel")
    expect(panel.locator(".reason")).to_contain_text("budget reached: 0 of 1,000 tokens")
    expect(panel.get_by_role("heading", name="The run's budget is reached")).to_be_visible()
    expect(page.locator("#run-header")).to_contain_text("1,000 tokens")
    screenshot(page, "run-budget-blocked")

    panel.get_by_label("Token budget").fill("0")
    panel.get_by_role("button", name="Raise budget and retry").click()
    expect(page.locator(".message.success")).to_contain_text("Budget now no limit")
    expect(page.locator("#stage-row-release")).to_have_class(
        re.compile("step-succeeded"), timeout=FINAL_TIMEOUT
    )
    screenshot(page, "run-budget-raised")
