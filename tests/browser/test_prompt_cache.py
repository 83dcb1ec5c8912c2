"""The run page's cached / uncached input in a real browser, from a run whose model was
answered through the Anthropic SDK by the fake server applying Anthropic's caching rules
(issue 14, section 3)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PROJECT_DIR, USERNAME, _git, login, screenshot, serve_repo
from tests.fakes.diamond import DiamondResponder
from tests.fakes.llm_server import FakeLlmServer, slow
from tests.fakes.prompt_cache import PromptCache

pytestmark = pytest.mark.browser

MODEL = "anthropic/claude-sonnet-4.5"


@pytest.fixture(scope="module")
def tekton_server(tmp_path_factory, chromium_path):
    """This module's own server: runs answered by the caching fake, not offline."""
    inner = DiamondResponder("")
    # Each call takes a moment, so the opening round's three calls overlap as at a vendor.
    fake = FakeLlmServer(responder=lambda p, b: slow(0.2, inner(p, b)), cache=PromptCache())
    fake.start()
    root = tmp_path_factory.mktemp("browser-cache")
    repo = root / "repos" / "shop"
    (repo / "src").mkdir(parents=True)
    (repo / "README.md").write_text("# Shop\n\nA small web shop.\n")
    (repo / "src" / "app.py").write_text("def total(prices):\n    return sum(prices)\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "Initial shop")
    try:
        yield from serve_repo(
            root,
            repo,
            latency_ms=0,
            TEKTON_LLM_BACKEND="auto",
            ANTHROPIC_API_KEY="sk-ant-browser-0123456789abcdef",
            ANTHROPIC_BASE_URL=fake.anthropic_base_url,
        )
    finally:
        fake.stop()


def test_the_run_page_shows_cached_and_uncached_input(page, tekton_server):
    argv = [sys.executable, str(PROJECT_DIR / "manage.py"), "tekton", "run", "--goal",
            "Add an order total endpoint", "--repo", str(tekton_server.repo), "--to",
            "research", "--model", MODEL]  # fmt: skip
    done = subprocess.run(
        argv, cwd=PROJECT_DIR, env=tekton_server.env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    # A run started from the command line has no owner: give it to the page's user.
    claim = (
        "from django.contrib.auth import get_user_model as g; from runs.models import Run; "
        f"r = Run.objects.latest('pk'); r.owner = g().objects.get(username={USERNAME!r}); "
        "r.save(update_fields=['owner']); print(f'RUN={r.pk}')"
    )
    out = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "manage.py"), "shell", "-c", claim],
        cwd=PROJECT_DIR, env=tekton_server.env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    run_id = re.search(r"RUN=(\d+)", out).group(1)
    login(page, tekton_server)
    page.goto(f"{tekton_server.base_url}/runs/{run_id}/")
    expect(page.locator("#stage-row-research")).to_have_class(re.compile("step-succeeded"))
    split = page.locator("#run-header .input-split dd")
    expect(split).to_contain_text(re.compile(r"[\d.]+k? cached / [\d.]+k? uncached"))
    expect(split).to_contain_text("cache writes")
    for stage in ("plan", "research"):
        expect(page.locator(f"#stage-row-{stage} .input-split")).to_contain_text(
            re.compile(r"in [1-9][\d.]*k? cached / [\d.]+k? uncached")
        )
    screenshot(page, "run-prompt-cache", full_page=False)
