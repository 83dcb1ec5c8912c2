"""The engine's repository work: agents call tools through each vendor's native tool
calling (the official SDKs against the fake server, both wire protocols), the code
stage's diff goes back once with the apply error, and test_debug's ship follows the
evidence."""

from __future__ import annotations

import json
from typing import Any

import pytest

from swarm.debate import stage_run
from swarm.events import ToolUsed
from swarm.providers.router import router_build
from swarm.tools import StageTools
from tests.fakes.llm_server import FakeLlmServer, ok, tool_calls
from tests.swarm.conftest import ScriptedCompleter, config, stage_input, valid_artifacts


@pytest.fixture
def scripted():
    def make(handler):
        completer = ScriptedCompleter(handler)
        return completer, completer.requests

    return make


def _debater(approve: bool = True) -> dict[str, Any]:
    return {
        "position": "go ahead",
        "score": dict.fromkeys(
            ("correctness", "stack_fit", "ops_risk", "reversibility", "recency"), 0.8
        ),
        "risks": [],
        "checks": [],
        "self_confidence": 0.9,
        "dissent": None,
        "vote": {"approve": approve, "reason": "fine"},
    }


def _mediator(stage: str, artifact: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "artifact": artifact or valid_artifacts()[stage],
        "status": "approve",
        "rationale": "agreed",
        "dissent": [],
        "risks": [],
        "checklist": [],
        "confidence": 0.9,
        "votes": [],
        "loops_run": 0,
    }


@pytest.fixture
def server():
    fake = FakeLlmServer().start()
    yield fake
    fake.stop()


def _router(server: FakeLlmServer, protocol: str):
    if protocol == "openai":
        route = {"match": "*/*", "backend": "openai", "base_url": server.openai_base_url}
        return router_build(routes=[route], env={"PATH": ""}, backend_override="auto")
    route = {
        "match": "*/*",
        "backend": "anthropic",
        "base_url": server.anthropic_base_url,
        "key_env": "ANTHROPIC_API_KEY",
    }
    return router_build(
        routes=[route], env={"ANTHROPIC_API_KEY": "sk-ant-test"}, backend_override="auto"
    )


class _Work:
    def __init__(self, tools=None, apply=None, evidence=None):
        self.tools, self.workdir = tools, None
        if apply is not None:
            self.apply_patch = apply
        if evidence is not None:
            self.test_evidence = evidence


def _answering(calls: list[tuple[str, dict[str, Any]]]):
    """A responder: the proponent's first turn calls `calls`, then everyone answers."""

    def respond(path: str, body: dict[str, Any]):
        wire = json.dumps(body)
        # Every call of the stage is offered both answer tools; the turn says whose it is.
        if "You are the mediator" in wire:
            return ok(_mediator("plan"), tool="mediator_answer")
        answered = '"tool_result"' in wire or '"role": "tool"' in wire
        if "You are the proponent" in wire and not answered:
            return tool_calls(*calls)
        return ok(_debater(), tool="debater_answer")

    return respond


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_proponent_reads_a_file_through_native_tool_calls(server, facts, protocol):
    tools = StageTools(workspace=facts.path, stage="plan")
    server.responder = _answering([("read_file", {"path": "README.md"})])
    events: list[Any] = []
    out = await stage_run(
        stage_input(facts),
        config(rounds=0),
        completer=_router(server, protocol),
        emit=events.append,
        work=_Work(tools),
    )
    assert out.status == "succeeded", out.reason
    (used,) = [e for e in events if isinstance(e, ToolUsed)]
    assert (used.role, used.tool, used.ok) == ("proponent", "read_file", True)
    assert used.arguments == {"path": "README.md"}
    bodies = [r.body for r in server.requests]
    names = [t.get("name") or t["function"]["name"] for t in bodies[0]["tools"]]
    assert {"read_file", "list_files", "search_code"} <= set(names)

    # Every call of the stage carries the same definitions (one cacheable prefix); on
    # Anthropic the structured answer is one more tool, named after what is asked.
    def own(body):
        return [t for t in body["tools"] if not t.get("name", "").endswith("_answer")]

    assert all(own(b) == own(bodies[0]) for b in bodies)
    if protocol == "openai":
        results = [m for b in bodies for m in b["messages"] if m.get("role") == "tool"]
        ids = [m["tool_call_id"] for m in results]
        texts = [m["content"] for m in results]
        assert ids == ["call_fake_1"]
    else:
        results = [
            blk
            for b in bodies
            for m in b["messages"]
            if isinstance(m["content"], list)
            for blk in m["content"]
            if blk.get("type") == "tool_result"
        ]
        ids = [blk["tool_use_id"] for blk in results]
        texts = [json.dumps(blk["content"]) for blk in results]
        assert ids == ["toolu_fake_1"]
    assert "A small service used by the engine tests." in texts[0]  # the file went back


async def test_a_turn_that_used_its_calls_is_told_to_answer(server, facts):
    tools = StageTools(workspace=facts.path, stage="plan")
    asked: list[dict[str, Any]] = []

    def respond(path: str, body: dict[str, Any]):
        wire = json.dumps(body)
        if "You are the mediator" in wire:
            return ok(_mediator("plan"), tool="mediator_answer")
        if "You are the proponent" in wire:
            asked.append(body)
            if body.get("tool_choice") != "none":
                return tool_calls(("list_files", {"path": "."}))  # it would go on forever
        return ok(_debater(), tool="debater_answer")

    server.responder = respond
    out = await stage_run(
        stage_input(facts),
        config(rounds=0, max_tool_calls=2),
        completer=_router(server, "openai"),
        emit=lambda e: None,
        work=_Work(tools),
    )
    assert out.status == "succeeded"
    assert [b.get("tool_choice") for b in asked] == [None, None, "none"]


async def test_a_diff_that_does_not_apply_goes_back_once_with_the_error(scripted, facts):
    applied: list[str] = []

    def apply(diff: str) -> tuple[bool, str]:
        applied.append(diff)
        return (len(applied) > 1, "error: patch failed: docs/note.md:1")

    completer, calls = scripted(
        lambda req: _mediator("code") if req.metadata["kind"] != "debater" else _debater()
    )
    out = await stage_run(
        stage_input(facts, stage="code"),
        config(rounds=0),
        completer=completer,
        emit=lambda e: None,
        work=_Work(apply=apply),
    )
    assert out.status == "succeeded", out.reason
    assert len(applied) == 2
    repair = [c for c in calls if c.metadata["kind"] == "apply_repair"]
    assert len(repair) == 1 and "patch failed: docs/note.md:1" in repair[0].messages[-1].text


async def test_a_diff_that_never_applies_blocks_with_the_error(scripted, facts):
    completer, _ = scripted(
        lambda req: _mediator("code") if req.metadata["kind"] != "debater" else _debater()
    )
    out = await stage_run(
        stage_input(facts, stage="code"),
        config(rounds=0),
        completer=completer,
        emit=lambda e: None,
        work=_Work(apply=lambda diff: (False, "error: corrupt patch at line 5")),
    )
    assert out.status == "blocked"
    assert out.reason.endswith("patch does not apply: error: corrupt patch at line 5")


@pytest.mark.parametrize(
    ("evidence_ship", "model_ship", "consensus_free", "status"),
    [
        (False, True, False, "blocked"),  # the debate cannot overrule a newly failing test
        (True, False, False, "blocked"),  # it may be stricter
        (True, True, False, "succeeded"),
        (True, False, True, "succeeded"),  # consensus-free: the evidence alone decides
        (False, True, True, "blocked"),
    ],
)
async def test_test_debug_ships_only_where_the_evidence_agrees(
    scripted, facts, evidence_ship, model_ship, consensus_free, status
):
    evidence = {
        "ship": evidence_ship,
        "reasons": [] if evidence_ship else ["1 test(s) newly failing"],
    }
    report = {**valid_artifacts()["test_debug"], "ship": model_ship}
    seen: list[Any] = []

    def answer(req):
        seen.append(req)
        if req.metadata["kind"] == "debater":
            return _debater()
        return _mediator("test_debug", report) if req.metadata["kind"] == "mediator" else report

    completer, _ = scripted(answer)
    out = await stage_run(
        stage_input(facts, stage="test_debug"),
        config(rounds=0, consensus_free=consensus_free),
        completer=completer,
        emit=lambda e: None,
        work=_Work(evidence=lambda: evidence),
    )
    assert out.status == status, out.reason
    assert out.artifact["evidence"] == evidence
    assert out.artifact["ship"] is (evidence_ship and (consensus_free or model_ship))
    if not evidence_ship:
        assert "1 test(s) newly failing" in out.reason
    assert '"test_evidence"' in seen[0].messages[2].text  # the agents argued over it
