"""Retrieval as a person sees it, on the embedded workflow: `tekton index` starts the
on-demand milvus-lite server, the dashboard talks to the same one, a run's review stage
shows its Context (chunks with path:lines and score), and the Repositories page searches
the index. Screenshots: run-page-context.png (the whole page) and run-context.png (its
Context section), repositories-search-page.png and repositories-search.png (the results)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    PROJECT_DIR,
    _clean_env,
    _git,
    launch_run,
    login,
    screenshot,
    serve_repo,
)

pytestmark = pytest.mark.browser

FILES = {
    "README.md": "# Shop\n\nA small web shop: carts, invoices and payments.\n",
    "shop/invoice.py": (
        "def apply_discount(total: float, percent: float) -> float:\n"
        '    """Reduce an invoice total by a percentage coupon."""\n'
        "    return total * (1 - percent / 100)\n\n\n"
        "def with_tax(total: float, rate: float) -> float:\n"
        '    """The amount due including value added tax."""\n'
        "    return total * (1 + rate)\n"
    ),
    "shop/payments.py": (
        "def refund(payment_id: str) -> bool:\n"
        '    """Refund a captured card payment to the customer."""\n'
        "    return bool(payment_id)\n"
    ),
    "docs/deploy.md": "# Deploying\n\n## Rolling back\n\nRoll back to the previous image tag.\n",
}


@pytest.fixture(scope="module")
def retrieval_server(tmp_path_factory, chromium_path):
    root = tmp_path_factory.mktemp("browser-retrieval")
    repo = root / "repos" / "shop"
    for name, text in FILES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "Shop")
    # `tekton index` (which starts the on-demand milvus-lite server) runs while the web
    # server starts: they share nothing but that server, as on a person's machine.
    env = _clean_env(
        TEKTON_DATA_DIR=str(root / "data"), TEKTON_REPO_ROOTS=str(repo.parent),
        TEKTON_RETRIEVAL="true",
    )  # fmt: skip
    indexing = subprocess.Popen(
        [sys.executable, str(PROJECT_DIR / "manage.py"), "tekton", "index", str(repo)],
        cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for server in serve_repo(root, repo, latency_ms=30, TEKTON_RETRIEVAL="true"):
            _, err = indexing.communicate(timeout=120)
            assert indexing.returncode == 0, err
            yield server
    finally:
        if indexing.poll() is None:
            indexing.kill()
            indexing.wait()
        from swarm.retrieval import local_server_stop

        local_server_stop(root / "data" / "milvus")


def test_the_run_page_shows_what_a_stage_retrieved_and_the_repository_page_searches(
    page, retrieval_server
):
    server = retrieval_server
    login(page, server)
    launch_run(
        page,
        server,
        "Apply a percentage discount to the invoice total",
        stage_from="review",
        stage_to="review",
    )
    run_url = page.url

    page.goto(run_url + "?stage=review")
    context = page.locator("#context")
    for _ in range(120):  # the section appears once review has started
        if context.count() and "shop/invoice.py:" in context.inner_text():
            break
        page.wait_for_timeout(500)
        page.goto(run_url + "?stage=review")
    expect(context.get_by_role("heading", name="Context")).to_be_visible()
    first = context.locator("table.context-chunks tbody tr").first
    expect(first).to_contain_text(re.compile(r"shop/invoice\.py:\d+-\d+"))
    expect(first.locator("td.num")).to_have_text(re.compile(r"^0\.\d{4}$"))
    # Once the stage has ended the panel stops being refreshed under the screenshot.
    expect(page.locator("#stage-row-review")).to_have_class(
        re.compile("step-(succeeded|blocked|failed)"), timeout=60_000
    )
    context.screenshot(path=str(screenshot(page, "run-page-context").with_name("run-context.png")))

    page.goto(server.base_url + "/repo/")
    box = page.get_by_role("search", name=f"Search {server.repo}")
    box.get_by_label("Search the index").fill("refund a card payment")
    box.get_by_role("button", name="Search").click()
    results = page.locator(".search-results")
    expect(results.locator(".search-hits li").first).to_contain_text("shop/payments.py:")
    results.screenshot(
        path=str(screenshot(page, "repositories-search-page").with_name("repositories-search.png"))
    )
