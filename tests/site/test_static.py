"""Static files: WhiteNoise serves the collected, hashed and compressed files in-process
and under `runserver` without --insecure."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.integration.harness import PROJECT_DIR, static_root
from tests.streams.live import free_port


@pytest.mark.django_db
def test_pages_name_hashed_files_that_whitenoise_serves_compressed(client):
    page = client.get("/accounts/login/").content.decode()
    css = re.search(r'href="(/static/tekton/tekton\.[0-9a-f]{12}\.css)"', page)
    assert css, page[:800]
    answer = client.get(css.group(1), HTTP_ACCEPT_ENCODING="gzip, br")
    assert answer.status_code == 200
    assert answer["Content-Encoding"] == "br"
    # A hashed name never changes content: cached for good.
    assert "immutable" in answer["Cache-Control"]
    assert client.get("/static/tekton/tekton.css").status_code == 404  # only hashed names


@pytest.mark.django_db
def test_api_docs_load_their_assets_from_this_server(client, user):
    client.force_login(user)
    page = client.get("/api/docs/").content.decode()
    assets = re.findall(r'(?:src|href)="(/static/drf_spectacular_sidecar/[^"]+)"', page)
    assert assets, page[:800]
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_runserver_without_insecure_serves_the_css(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEKTON_", "DJANGO_", "CELERY_")) and k != "DATABASE_URL"
    }
    env.update(TEKTON_DATA_DIR=str(tmp_path), TEKTON_STATIC_ROOT=str(static_root()))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "runserver did not start"
            time.sleep(0.1)
        page = httpx.get(base + "/accounts/login/").text
        css = re.search(r'href="(/static/tekton/tekton\.[0-9a-f]{12}\.css)"', page).group(1)
        answer = httpx.get(base + css)
        assert answer.status_code == 200
        assert ".topbar" in answer.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
