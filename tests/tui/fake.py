"""A fixed server for the screen tests and snapshots: the API's answer shapes with fixed
values (no clock, no ids that move), served to the real ApiClient through httpx's
MockTransport. The behaviour tests use a real server instead (test_live.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tui.app import TektonApp
from tui.client import ApiClient
from tui.state import STAGES

CREATED = "2026-03-02T09:15:00Z"
DIFF = """\
diff --git a/src/app.py b/src/app.py
--- a/src/app.py
+++ b/src/app.py
@@ -1,2 +1,6 @@
 def total(prices):
-    return sum(prices)
+    return round(sum(prices), 2)
+
+
+def health():
+    return {"status": "ok"}
diff --git a/tests/test_app.py b/tests/test_app.py
--- a/tests/test_app.py
+++ b/tests/test_app.py
@@ -3,2 +3,5 @@
 def test_total():
     assert total([1, 2]) == 3
+
+def test_health():
+    assert health() == {"status": "ok"}
"""


def stage_row(name: str, position: int, status: str, **extra: Any) -> dict[str, Any]:
    done = status in ("succeeded", "blocked")
    row = {
        "stage": name,
        "position": position,
        "status": status,
        "attempt": 1 if status != "queued" else 0,
        "confidence": 0.81 if done else None,
        "approval": 0.73 if done else None,
        "votes": [],
        "reason": "",
        "note": "",
        "input_tokens": 9000 if done else 0,
        "output_tokens": 3000 if done else 0,
        "cost_usd": 0.0123 if done else 0.0,
        "duration_s": 41.0 if done else None,
        "started_at": CREATED if status != "queued" else None,
        "finished_at": CREATED if done else None,
        "heartbeat_at": None,
    }
    row.update(extra)
    return row


VOTES = [
    {"role": "proponent", "approve": True, "self_confidence": 0.8, "reason": "covers the goal"},
    {"role": "skeptic", "approve": False, "self_confidence": 0.7, "reason": "no rollback test"},
    {"role": "pragmatist", "approve": False, "self_confidence": 0.6, "reason": "too broad"},
]


def run_detail(run_id: int = 7, *, status: str = "blocked") -> dict[str, Any]:
    stages = []
    for position, name in enumerate(STAGES, start=1):
        if position <= 4:
            stages.append(stage_row(name, position, "succeeded"))
        elif name == "review" and status == "blocked":
            stages.append(
                stage_row(
                    name,
                    position,
                    "blocked",
                    approval=0.33,
                    confidence=0.64,
                    votes=VOTES,
                    reason="quorum 0.33 < 0.67 and confidence 0.64 < 0.70",
                )
            )
        elif name == "threat":
            stages.append(stage_row(name, position, "succeeded"))
        else:
            stages.append(stage_row(name, position, "queued"))
    return {
        "id": run_id,
        "goal": "[b]Add[/b] a health endpoint to the shop",
        "repo": "/srv/repos/shop",
        "profile": "diamond-v5",
        "from": "plan",
        "to": "release",
        "status": status,
        "reason": "stage review blocked: quorum 0.33 < 0.67" if status == "blocked" else "",
        "owner": "ada",
        "consensus_free": [],
        "input_tokens": 54000,
        "output_tokens": 18000,
        "total_tokens": 72000,
        "cost_usd": 0.0615,
        "duration_s": 222.0,
        "created_at": CREATED,
        "started_at": CREATED,
        "finished_at": None,
        "last_event_seq": 80,
        "parent": None,
        "forked_from_stage": "",
        "forks": [],
        "config": {"quorum": 2 / 3, "threshold": 0.7, "rounds": 2},
        "stages": stages,
        "artifacts": ARTIFACTS,
    }


ARTIFACTS = [
    {"name": "plan.json", "stage": "plan", "kind": "json", "size": 412, "sha256": "a" * 64},
    {"name": "code.json", "stage": "code", "kind": "json", "size": 300, "sha256": "b" * 64},
    {"name": "diff.patch", "stage": "code", "kind": "patch", "size": 420, "sha256": "c" * 64},
]
FILES = {
    "plan.json": {
        "goals": ["Answer GET /health with 200 and a JSON body"],
        "milestones": ["handler", "test", "docs"],
        "acceptance_criteria": ["GET /health returns {'status': 'ok'}"],
        "risks": ["the route shadows an existing one"],
        "slos": ["p99 < 50 ms"],
        "dri": "ada",
        "timeline": "one day",
        "confidence": 0.81,
    },
    "code.json": {
        "diff": "(see diff.patch)",
        "files_changed": ["src/app.py", "tests/test_app.py"],
        "commands_run": ["pytest -q"],
        "tests_executed": ["tests/test_app.py::test_health"],
        "risk_notes": [],
        "confidence": 0.86,
    },
}


ATTEMPTS = {
    "run": 7,
    "stage": "review",
    "attempt": 2,
    "attempts": [
        {
            "number": 1,
            "status": "blocked",
            "reason": "quorum 0.33 < 0.67",
            "note": "",
            "confidence": 0.5,
            "approval": 0.33,
            "artifact": {"verdict": "revise"},
            "patch": "",
            "started_at": CREATED,
            "finished_at": CREATED,
            "created_at": CREATED,
        }
    ],
    "compare": [
        {"key": "attempt-1", "label": "attempt 1 (blocked)"},
        {"key": "run-5", "label": "parent run 5"},
    ],
}
COMPARISONS = {
    "attempt-1": {
        "run": 7,
        "stage": "review",
        "key": "attempt-1",
        "old_label": "attempt 1 (blocked)",
        "new_label": "run 7 (now)",
        "same": False,
        "diff": '--- a/review.json\n+++ b/review.json\n@@ -1,3 +1,3 @@\n {\n-  "verdict": '
        '"revise"\n+  "verdict": "ship"\n }\n',
    },
    "run-5": {
        "run": 7,
        "stage": "review",
        "key": "run-5",
        "old_label": "parent run 5",
        "new_label": "run 7",
        "same": True,
        "diff": "",
    },
}


def message(seq: int, role: str, text: str, *, approve: bool | None = None, conf=0.7):
    answer: dict[str, Any] = {"position": text, "self_confidence": conf}
    if role == "mediator":
        answer = {"rationale": text, "confidence": conf}
    if approve is not None:
        answer["vote"] = {"approve": approve, "reason": "because"}
    return {
        "seq": seq,
        "role": role,
        "model": "anthropic/claude-opus-4.1",
        "position": text,
        "self_confidence": conf,
        "vote": answer.get("vote"),
        "answer": answer,
        "created_at": CREATED,
    }


def transcript(run_id: int = 7) -> dict[str, Any]:
    review = {
        "stage": "review",
        "status": "blocked",
        "attempt": 1,
        "confidence": 0.64,
        "approval": 0.33,
        "votes": VOTES,
        "mediator": {},
        "rounds": [
            {
                "attempt": 1,
                "round": 0,
                "label": "opening",
                "messages": [
                    message(60, "proponent", "The diff adds /health and a test."),
                    message(61, "skeptic", "Nothing checks the route against existing ones."),
                    message(62, "pragmatist", "Ship the handler; the docs can wait."),
                ],
            },
            {
                "attempt": 1,
                "round": 1,
                "label": "debate 1",
                "messages": [
                    message(66, "proponent", "Route order is tested now.", approve=True, conf=0.8),
                    message(67, "skeptic", "Still no rollback test.", approve=False),
                    message(68, "pragmatist", "Too broad for one change.", approve=False, conf=0.6),
                ],
            },
            {
                "attempt": 1,
                "round": 3,
                "label": "mediator",
                "messages": [message(70, "mediator", "Revise: add a rollback test.", conf=0.64)],
            },
        ],
    }
    return {"run": run_id, "stages": [review]}


def runs_page() -> dict[str, Any]:
    def row(run_id, goal, status, repo, duration_s, total, cost_usd):
        return {
            "id": run_id,
            "goal": goal,
            "repo": repo,
            "profile": "diamond-v5",
            "from": "plan",
            "to": "release",
            "status": status,
            "reason": "",
            "owner": "ada",
            "consensus_free": [],
            "input_tokens": total * 3 // 4,
            "output_tokens": total // 4,
            "total_tokens": total,
            "cost_usd": cost_usd,
            "duration_s": duration_s,
            "created_at": CREATED,
            "started_at": CREATED,
            "finished_at": None,
        }

    return {
        "next": None,
        "previous": None,
        "results": [
            row(
                7,
                "[b]Add[/b] a health endpoint to the shop",
                "blocked",
                "/srv/repos/shop",
                222.0,
                72000,
                0.0615,
            ),
            row(
                6, "Rate-limit the login endpoint", "running", "/srv/repos/auth", 95.0, 31000, 0.021
            ),
            row(
                5,
                "Document the release process",
                "succeeded",
                "/srv/repos/docs",
                301.0,
                158000,
                1.42,
            ),
            row(4, "Drop Python 3.9 support", "failed", "/srv/repos/shop", 48.0, 9000, 0.004),
        ],
    }


def details() -> dict[int, dict[str, Any]]:
    out = {7: run_detail(7)}
    running = run_detail(6, status="running")
    for row in running["stages"]:
        if row["position"] > 2:
            row.update(stage_row(row["stage"], row["position"], "queued"))
        elif row["position"] == 2:
            row.update(stage_row(row["stage"], 2, "running"))
    out[6] = running
    done = run_detail(5, status="succeeded")
    for row in done["stages"]:
        row.update(stage_row(row["stage"], row["position"], "succeeded"))
    out[5] = done
    failed = run_detail(4, status="failed")
    for row in failed["stages"]:
        status = (
            "succeeded"
            if row["position"] == 1
            else "failed"
            if row["position"] == 2
            else "cancelled"
        )
        row.update(stage_row(row["stage"], row["position"], status))
    out[4] = failed
    return out


EXPLAIN = {
    "goal": "Add a health endpoint",
    "repo": "/srv/repos/shop",
    "profile": "diamond-v5",
    "rounds": 2,
    "quorum": 2 / 3,
    "threshold": 0.7,
    "stages": [
        {
            "stage": name,
            "position": i,
            "depends_on": [STAGES[i - 2]] if i > 1 else [],
            "consensus_free": name == "integrate",
            "roles": {
                "proponent": {"model": "openai/gpt-4o", "backend": "openai"},
                "skeptic": {"model": "anthropic/claude-opus-4.1", "backend": "anthropic"},
                "pragmatist": {"model": "anthropic/claude-opus-4.1", "backend": "anthropic"},
                "mediator": {"model": "anthropic/claude-opus-4.1", "backend": "anthropic"},
            },
        }
        for i, name in enumerate(STAGES[:4], start=1)
    ],
}


class FakeServer:
    """Answers like the API; `calls` records (method, path, body) of every request."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.details = details()

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.method, path, body))
        parts = path.strip("/").split("/")
        if path == "/api/runs/" and request.method == "GET":
            return httpx.Response(200, json=runs_page())
        if path == "/api/runs/" and request.method == "POST":
            if not (body or {}).get("goal"):
                return httpx.Response(
                    400, json={"errors": {"goal": ["This field may not be blank."]}}
                )
            if body.get("explain"):
                return httpx.Response(200, json=EXPLAIN)
            return httpx.Response(201, json=run_detail(8, status="queued"))
        if path == "/api/config/profiles/":
            return httpx.Response(200, json=[{"name": "diamond-v5"}, {"name": "fast"}])
        if len(parts) >= 3 and parts[:2] == ["api", "runs"] and parts[2].isdigit():
            run_id = int(parts[2])
            rest = parts[3:]
            if run_id not in self.details:
                return httpx.Response(404, json={"detail": f"run {run_id} not found"})
            if not rest:
                return httpx.Response(200, json=self.details[run_id])
            if rest == ["transcript"]:
                return httpx.Response(200, json=transcript(run_id))
            if rest == ["events"]:
                return httpx.Response(204)
            if rest == ["artifacts"]:
                return httpx.Response(200, json=ARTIFACTS)
            if rest[0] == "artifacts":
                name = rest[1]
                if name == "diff.patch":
                    return httpx.Response(200, text=DIFF)
                return httpx.Response(200, json=FILES[name])
            if rest == ["fork"]:
                if (body or {}).get("model") == "nope":
                    return httpx.Response(
                        400, json={"errors": {"model": ["a model id is vendor/model"]}}
                    )
                fork = run_detail(9, status="queued")
                fork.update(parent=run_id, forked_from_stage=body["from"])
                self.details[9] = fork
                return httpx.Response(201, json=fork)
            if rest[-1] == "attempts":
                return httpx.Response(200, json=ATTEMPTS)
            if rest[-1] == "compare":
                key = request.url.params.get("with")
                if key not in COMPARISONS:
                    return httpx.Response(404, json={"detail": f"no {key} to compare"})
                return httpx.Response(200, json=COMPARISONS[key])
            if rest[-1] == "approve":
                detail = self.details[run_id]
                detail["status"] = "running"
                for row in detail["stages"]:
                    if row["stage"] == rest[1]:
                        row["status"] = "succeeded"
                return httpx.Response(200, json=detail)
        return httpx.Response(404, json={"detail": "not found"})


def fake_app(server: FakeServer | None = None, **kwargs: Any) -> TektonApp:
    server = server or FakeServer()
    client = ApiClient(
        "http://tekton.test", "tkn_fake", transport=httpx.MockTransport(server.handler)
    )
    app = TektonApp(client, where="http://tekton.test", poll_seconds=3600, **kwargs)
    app.fake = server
    return app
