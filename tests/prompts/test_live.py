"""An invocation asked from the API or the page shows its answer while it streams, less a
held-back tail so that a secret still arriving never shows half-redacted (issue 12).
Transactional: the invocation runs in another thread, as a worker would."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from prompts.execution import invocation_run, router_for, spec_build
from prompts.models import PromptInvocation
from prompts.services import PARTIAL_HOLDBACK, prompt_invocation_create, prompt_invocation_partial
from swarm.frontdoor.journal import Journal
from tests.swarm.providers.conftest import fake_tool

KEY = "sk-ant-api03-PLANTEDsecretKEY0123456789abcdef"
SLOW_CLAUDE = """
def line(obj):
    print(json.dumps(obj), flush=True)
line({"type": "stream_event", "event": {"type": "message_start"}})
for piece in [("word " * 30), "and the rest"]:
    line({"type": "stream_event", "event": {"type": "content_block_delta", "delta": {"type": "text_delta", "text": piece}}})
    time.sleep(0.8)
line({"type": "result", "result": ("word " * 30) + "and the rest", "usage": {}})
"""


def test_the_partial_answer_holds_back_its_tail_and_is_redacted():
    assert prompt_invocation_partial("short") == ""
    text = f"the key is {KEY} " + "x" * PARTIAL_HOLDBACK
    assert prompt_invocation_partial(text) == "the key is [API_KEY#1] "


@pytest.mark.django_db(transaction=True)
def test_a_streaming_answer_shows_in_the_row_before_it_ends(tmp_path, monkeypatch):
    monkeypatch.setenv("TEKTON_LLM_BACKEND", "auto")
    monkeypatch.setenv("TEKTON_CLAUDE_BIN", str(fake_tool(tmp_path, "claude", SLOW_CLAUDE)))
    invocation = prompt_invocation_create(agent="claude", prompt="go")

    def work():
        try:
            invocation_run(
                spec=spec_build(kind="claude", text="go", model="claude-cli/sonnet"),
                completer=router_for("claude"),
                journal=Journal(tmp_path / "m"),
                invocation=invocation,
                live=True,
            )
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    seen = []
    while thread.is_alive():
        row = PromptInvocation.objects.get(pk=invocation.pk)
        if row.status == "running" and row.response:
            seen.append(row.response)
        time.sleep(0.1)
    thread.join()
    assert seen and seen[0].startswith("word word")
    final = PromptInvocation.objects.get(pk=invocation.pk)
    assert final.status == "ok" and final.response.endswith("and the rest")
