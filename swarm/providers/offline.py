"""The offline backend: deterministic answers in exactly the shapes a model gives, no network.

It reads `request.metadata` ({"stage", "role", "round", "kind", "repairs"}) and the
`<tekton-context>` block that swarm.prompts puts in every user message (goal, repository
facts, earlier artifacts, attempt, note), and answers with JSON text that the engine
parses and validates like any model's: debater answers with votes, mediator answers with
a schema-valid artifact, consensus-free drafts. Everything it writes is labelled: every
artifact has `offline: true` and its free texts start with "[offline]".

Determinism: each answer is drawn from a `random.Random` seeded with a SHA-256 of the
model id, the metadata and the message contents (never the global `random` state), so
the same request always gets the same answer. The one exception is test_debug's
`generated_at`, which is the real time the report was generated.

Votes and confidences vary with the seed so that quorum logic is really used, but an
ordinary run always passes: the skeptic sometimes votes no with a low self_confidence
(approval stays >= 0.70), mediator confidence lies in [0.74, 0.93].

Markers in the goal, for tests and demos (several may be combined):
- `[offline:block=STAGE]`: in STAGE the skeptic and the pragmatist vote no, so the quorum
  fails and the stage blocks. Active only on a first attempt without a retry note
  (attempt == 1 and note == ""): a retry (with a note) or an approval gets past it.
- `[offline:invalid=STAGE]`: in STAGE the mediator (or the consensus-free draft) answers
  with an artifact that fails validation, its repair too, so the stage blocks with the
  validation error. Same first-attempt rule.

The code stage's diff adds one new file, `docs/tekton/<slug>-<hash>.md`, a note with the
goal, the backlog and the repository facts. A new-file diff always passes `git apply
--check` unless that path already exists.

Latency: `latency_ms` (default: env TEKTON_OFFLINE_LATENCY_MS, else 0) is awaited with
asyncio.sleep on every call, for benchmarks. Usage is estimated at 4 characters a token;
cost is 0.

Tools on the request are accepted and never called: the answer is the same as without
them. With an on_delta callback the answer is streamed in STREAM_PIECES pieces, the
latency spread between them. For bench.token_stream, TEKTON_OFFLINE_STREAM_STAMPS=1 starts
each streamed piece with the wall time it left the provider, `«t=1712345678.123456»`, so a
subscriber can time it; the stored answer (Completion.text) never carries them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import time
from datetime import UTC, datetime
from typing import Any

from swarm.prompts import context_extract, transcript_extract
from swarm.providers.base import (
    STOP_TOOL_CALLS,
    Completion,
    CompletionRequest,
    Message,
    StreamDelta,
    ToolCall,
    Usage,
    message_to_dict,
)
from swarm.providers.streaming import text_pieces
from swarm.stages import STAGE_NAMES, stage_get

LATENCY_ENV = "TEKTON_OFFLINE_LATENCY_MS"
STAMPS_ENV = "TEKTON_OFFLINE_STREAM_STAMPS"
_MARKER = re.compile(r"\[offline:(block|invalid)=([a-z_]+)\]")
_TAG = "[offline]"


STREAM_PIECES = 12  # pieces of a streamed answer


def _latency_from_env() -> float:
    raw = os.environ.get(LATENCY_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{LATENCY_ENV} must be a number of milliseconds, got {raw!r}") from None
    if value < 0 or value != value:
        raise ValueError(f"{LATENCY_ENV} must be >= 0 milliseconds, got {raw!r}")
    return value


def goal_markers(goal: str) -> dict[str, set[str]]:
    """{"block": {stages}, "invalid": {stages}} named by markers in the goal."""
    found: dict[str, set[str]] = {"block": set(), "invalid": set()}
    for kind, stage in _MARKER.findall(goal):
        if stage in STAGE_NAMES:
            found[kind].add(stage)
    return found


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _content_text(message: Message) -> str:
    # A plain message as it always was (the seed of old requests must not move); blocks
    # as their canonical JSON.
    if isinstance(message.content, str):
        return message.content
    return json.dumps(message_to_dict(message)["content"], sort_keys=True, ensure_ascii=False)


def _short(text: str, n: int = 100) -> str:
    line = " ".join(_MARKER.sub("", text).split())
    return line if len(line) <= n else line[: n - 1] + "…"


def _slug(goal: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", _MARKER.sub("", goal).lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(goal.encode()).hexdigest()[:8]
    return f"{base or 'change'}-{digest}"


class _Ctx:
    """The parts of the prompt context the builders use, with safe defaults."""

    def __init__(self, data: dict[str, Any] | None, stage: str):
        data = data or {}
        self.stage = data.get("stage") or stage
        self.goal = str(data.get("goal") or "")
        self.attempt = int(data.get("attempt") or 1)
        self.note = str(data.get("note") or "")
        self.repo: dict[str, Any] = data.get("repo") or {}
        self.prior: dict[str, Any] = data.get("prior_artifacts") or {}
        markers = goal_markers(self.goal)
        first_try = self.attempt == 1 and not self.note
        self.blocked = first_try and self.stage in markers["block"]
        self.invalid = first_try and self.stage in markers["invalid"]

    @property
    def goal_short(self) -> str:
        return _short(self.goal) or "the requested change"

    @property
    def languages(self) -> list[str]:
        return list((self.repo.get("languages") or {}).keys())

    @property
    def main_language(self) -> str:
        return self.languages[0] if self.languages else "the existing"

    def repo_line(self) -> str:
        langs = ", ".join(self.languages[:3]) or "no recognised languages"
        branch = self.repo.get("branch") or "a detached HEAD"
        dirty = "with uncommitted changes" if self.repo.get("is_dirty") else "clean"
        return f"{self.repo.get('file_count', 0)} tracked files ({langs}) on {branch}, {dirty}"


def _conf(rng: random.Random, lo: float, hi: float) -> float:
    return round(rng.uniform(lo, hi), 2)


def _pick(rng: random.Random, pool: list[str], k: int) -> list[str]:
    return rng.sample(pool, min(k, len(pool)))


# --- debaters ------------------------------------------------------------------------------
_STAGE_RISKS = {
    "plan": ["scope creep beyond the goal", "acceptance criteria nobody can check", "no owner"],
    "research": ["stale sources", "an option with an unclear licence", "lock-in"],
    "plan_update": ["hidden dependency between items", "an item too big to finish", "no owner"],
    "code": ["regression in untested code", "a change larger than needed", "no rollback"],
    "review": ["coverage gap", "merge conflict with ongoing work", "unreviewed edge case"],
    "threat": ["secret leakage in logs", "PII in artifacts", "an unpinned dependency"],
    "integrate": ["config drift between environments", "a migration with no down path"],
    "test_debug": ["flaky tests hiding failures", "assertions missing on the new path"],
    "release": ["nobody on call", "canary too small to tell", "rollback untested"],
}


def _debater(ctx: _Ctx, role: str, rnd: int, rng: random.Random) -> dict[str, Any]:
    spec = stage_get(ctx.stage)
    if role == "proponent" or (role == "pragmatist" and not ctx.blocked):
        approve = True
    elif ctx.blocked:
        approve = False
    else:
        approve = rng.random() >= 0.3  # the skeptic dissents now and then
    # A dissenter weighs less than an approver, so one dissent alone never sinks a stage.
    self_conf = _conf(rng, 0.78, 0.95) if approve else _conf(rng, 0.5, 0.65)
    stance = "round opening" if rnd == 0 else f"round {rnd}"
    position = (
        f"{_TAG} {role}, {stance}: {spec.briefs[role]} For '{ctx.goal_short}' in a repository "
        f"of {ctx.repo_line()}, this stage should deliver {spec.produces}."
    )
    risks = _pick(rng, _STAGE_RISKS[ctx.stage], 2)
    return {
        "position": position,
        "score": {
            k: _conf(rng, 0.55, 0.95)
            for k in ("correctness", "stack_fit", "ops_risk", "reversibility", "recency")
        },
        "risks": [f"{_TAG} {r}" for r in risks],
        "checks": [f"{_TAG} verify: {spec.produces.split(',')[0]}"],
        "self_confidence": self_conf,
        "dissent": None if approve else f"{_TAG} {role} is not convinced: {risks[0]}",
        "vote": {
            "approve": approve,
            "reason": f"{_TAG} "
            + ("the proposal covers the goal" if approve else f"unresolved risk: {risks[0]}"),
        },
    }


# --- artifacts -----------------------------------------------------------------------------
def _milestones(ctx: _Ctx) -> list[str]:
    plan = ctx.prior.get("plan") or {}
    ms = [m for m in plan.get("milestones") or [] if isinstance(m, str)]
    return ms or [
        f"{_TAG} agree the scope of: {ctx.goal_short}",
        f"{_TAG} make the change in the {ctx.main_language} code with tests",
        f"{_TAG} review, integrate and release behind a rollback",
    ]


def _code_diff(ctx: _Ctx) -> tuple[str, str]:
    path = f"docs/tekton/{_slug(ctx.goal)}.md"
    backlog = (ctx.prior.get("plan_update") or {}).get("items") or []
    lines = [
        f"# {_TAG} {ctx.goal_short}",
        "",
        "Written by Tekton's offline backend: no language model was called.",
        "",
        "## Goal",
        "",
        *(ctx.goal.splitlines() or [""]),
        "",
        "## Backlog",
        "",
        *[
            f"- {i.get('item_id', '?')}: {' '.join(str(i.get('task', '')).split())}"
            for i in backlog
            if isinstance(i, dict)
        ],
        *([] if backlog else ["- (no backlog from plan_update)"]),
        "",
        "## Repository",
        "",
        f"- {ctx.repo_line()}",
        f"- test paths: {', '.join(ctx.repo.get('test_paths') or []) or 'none found'}",
    ]
    body = "".join(f"+{line}\n" for line in lines)
    diff = (
        f"diff --git a/{path} b/{path}\n"
        "new file mode 100644\n"
        "--- /dev/null\n"
        f"+++ b/{path}\n"
        f"@@ -0,0 +1,{len(lines)} @@\n" + body
    )
    return path, diff


def _artifact(ctx: _Ctx, rng: random.Random) -> dict[str, Any]:
    stage, conf = ctx.stage, _conf(rng, 0.74, 0.93)
    g = ctx.goal_short
    tests = ctx.repo.get("test_paths") or []
    if stage == "plan":
        risks = [f"{_TAG} {r}" for r in _pick(rng, _STAGE_RISKS["plan"], 2)]
        if ctx.repo.get("is_dirty"):
            risks.append(f"{_TAG} the working tree has uncommitted changes")
        if not tests:
            risks.append(f"{_TAG} the repository has no tests to guard the change")
        art = {
            "goals": [f"{_TAG} {g}"],
            "milestones": _milestones(ctx),
            "acceptance_criteria": [
                f"{_TAG} the change for '{g}' is in a reviewed diff",
                f"{_TAG} the existing test suite still passes"
                + (f" ({', '.join(tests[:3])})" if tests else ""),
            ],
            "risks": risks,
            "slos": [f"{_TAG} no regression in existing behaviour"],
            "dri": f"{_TAG} the person who launched the run",
            "timeline": f"{_TAG} one iteration",
        }
    elif stage == "research":
        lang = ctx.main_language
        options = [
            {
                "name": f"extend the {lang} code in place",
                "pros": [f"{_TAG} smallest diff", f"{_TAG} fits the current stack"],
                "cons": [f"{_TAG} couples the change to existing modules"],
                "links": [],
            },
            {
                "name": "add a separate module",
                "pros": [f"{_TAG} isolated and easy to remove"],
                "cons": [f"{_TAG} more surface to review"],
                "links": [],
            },
        ]
        art = {
            "options": options,
            "decision_matrix": [
                {"option": o["name"], "fit": _conf(rng, 0.5, 0.9), "risk": _conf(rng, 0.1, 0.5)}
                for o in options
            ],
            "chosen": options[0]["name"],
            "citations": [f"{_TAG} no sources consulted: the offline backend has no network"],
            "freshness_window_days": 120,
        }
    elif stage == "plan_update":
        items = []
        for i, m in enumerate(_milestones(ctx), start=1):
            items.append(
                {
                    "item_id": f"T{i}",
                    "task": m if m.startswith(_TAG) else f"{_TAG} {m}",
                    "rationale": f"{_TAG} milestone {i} of the plan",
                    "dependencies": [f"T{i - 1}"] if i > 1 else [],
                    "owner": None,
                }
            )
        art = {"items": items, "plan_version": "2"}
    elif stage == "code":
        path, diff = _code_diff(ctx)
        art = {
            "diff": diff,
            "files_changed": [path],
            "commands_run": [],
            "tests_executed": [],
            "risk_notes": [f"{_TAG} documentation-only change: no code was generated offline"],
        }
    elif stage == "review":
        files = (ctx.prior.get("code") or {}).get("files_changed") or []
        revise = rng.random() < 0.2
        art = {
            "status": "revise" if revise else "ok",
            "issues": [f"{_TAG} check the wording of {f}" for f in files[:3]] if revise else [],
            "fixlist": [f"{_TAG} tighten the note's acceptance criteria"] if revise else [],
            "risks": [f"{_TAG} {r}" for r in _pick(rng, _STAGE_RISKS["review"], 1)],
            "dissent": [],
        }
    elif stage == "threat":
        files = (ctx.prior.get("code") or {}).get("files_changed") or []
        art = {
            "dfd": f"{_TAG} goal text -> Tekton -> diff touching {', '.join(files) or 'no files'}",
            "risks": [f"{_TAG} {r}" for r in _STAGE_RISKS["threat"]],
            "mitigations": [f"{_TAG} redact secrets and PII before storing", f"{_TAG} pin deps"],
            "controls": [f"{_TAG} CI secret scan", f"{_TAG} review before merge"],
            "rollback_plan": f"{_TAG} git revert the merge commit",
            "compliance": {"pii": "none introduced", "new_dependencies": []},
        }
    elif stage == "integrate":
        art = {
            "flags": [],
            "migrations": [],
            "config_map": {},
            "rollback": f"{_TAG} git revert the merge commit; no data to migrate back",
        }
    elif stage == "test_debug":
        art = {
            "ship": True,
            "junit_path": None,
            "coverage": {"measured": False, "reason": f"{_TAG} tests were not run offline"},
            "flakes": [],
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    else:  # release
        head = (ctx.repo.get("head") or "nohead")[:7]
        art = {
            "environment": "staging",
            "version": f"0.0.0+offline.{head}",
            "canary_metrics": {"error_rate_max": 0.01, "p95_latency_ms_max": 500},
            "health": f"{_TAG} not deployed: offline run",
            "rollback_cmds": ["git revert --no-edit HEAD"],
            "links": [],
        }
    art["confidence"] = conf
    art["offline"] = True
    if ctx.invalid:
        # Wrong on purpose: confidence out of range and a required field missing.
        art["confidence"] = 7
        art.pop(next(k for k in art if k not in ("confidence", "offline")))
    return art


def _mediator(ctx: _Ctx, transcript: list[dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    last: dict[str, dict[str, Any]] = {}
    for entry in transcript:
        if isinstance(entry, dict) and isinstance(entry.get("vote"), dict):
            last[str(entry.get("role"))] = entry
    votes = [
        {"role": r, "approve": bool(e["vote"].get("approve")), "weight": e.get("self_confidence")}
        for r, e in last.items()
    ]
    rounds = max((int(e.get("round", 0)) for e in transcript if isinstance(e, dict)), default=0)
    dissent = [str(e["dissent"]) for e in last.values() if e.get("dissent")]
    return {
        "artifact": _artifact(ctx, rng),
        "status": "revise" if dissent and ctx.blocked else "approve",
        # Said as the page shows them: the opening, then the debate rounds.
        "rationale": f"{_TAG} reconciled {len(transcript)} answers: the opening"
        + (f" and {rounds} debate round{'s' if rounds != 1 else ''}" if rounds else ""),
        "dissent": dissent,
        "risks": [f"{_TAG} {r}" for r in _pick(rng, _STAGE_RISKS[ctx.stage], 2)],
        "checklist": [f"{_TAG} artifact validates against the {ctx.stage} schema"],
        "confidence": _conf(rng, 0.74, 0.93),
        "votes": votes,
        "loops_run": rounds,
    }


class OfflineProvider:
    """Deterministic, network-free backend. See the module docstring for its rules."""

    name = "offline"

    def __init__(self, *, latency_ms: float | None = None):
        self.latency_ms = _latency_from_env() if latency_ms is None else float(latency_ms)
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {latency_ms!r}")
        self.stamps = os.environ.get(STAMPS_ENV, "").strip().lower() in ("1", "true", "yes")

    def _seed(self, request: CompletionRequest) -> int:
        h = hashlib.sha256(request.model.encode())
        h.update(json.dumps(request.metadata, sort_keys=True, default=str).encode())
        for m in request.messages:
            h.update(b"\0" + m.role.encode() + b"\0" + _content_text(m).encode())
        return int.from_bytes(h.digest()[:8], "big")

    def answer(self, request: CompletionRequest) -> dict[str, Any] | str:
        """The answer for `request`: a dict for JSON kinds, else a plain text reply."""
        meta = request.metadata
        kind = meta.get("kind")
        if kind == "repair":
            kind = meta.get("repairs") or "debater"
        stage = meta.get("stage")
        rng = random.Random(self._seed(request))
        if kind in ("debater", "mediator", "draft") and stage in STAGE_NAMES:
            ctx = _Ctx(context_extract(request.messages), stage)
            if kind == "debater":
                return _debater(
                    ctx, str(meta.get("role") or "proponent"), int(meta.get("round") or 0), rng
                )
            if kind == "mediator":
                return _mediator(ctx, transcript_extract(request.messages), rng)
            return _artifact(ctx, rng)
        last_user = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
        return f"{_TAG} No model was called. Offline reply to: {_short(last_user, 200)}"

    def tool_calls(self, request: CompletionRequest) -> tuple[ToolCall, ...]:
        """The tools a proponent's opening turn calls when the request offers them, before
        it answers: it lists the repository, reads the README and, in the code stage, runs
        the tests (where run_tests is offered; the tool layer refuses what the role was not
        granted). Once the conversation holds their results it answers as usual."""
        offered = {t.name for t in request.tools}
        meta = request.metadata
        if (
            not offered
            or request.tool_choice == "none"
            or meta.get("kind") not in ("debater", "draft")
            or meta.get("role") != "proponent"
            or int(meta.get("round") or 0) != 0
            or any(m.tool_results for m in request.messages)
        ):
            return ()
        stage = str(meta.get("stage") or "")
        repo = (context_extract(request.messages) or {}).get("repo") or {}
        files = [f for f in repo.get("files") or [] if isinstance(f, str)]
        wanted: list[tuple[str, dict[str, Any]]] = []
        if "list_files" in offered:
            wanted.append(("list_files", {"path": "."}))
        readme = next((f for f in files if f.lower().startswith("readme")), None)
        if readme and "read_file" in offered:
            wanted.append(("read_file", {"path": readme, "start_line": 1, "end_line": 40}))
        if stage == "code" and "run_tests" in offered:
            wanted.append(("run_tests", {}))
        return tuple(
            ToolCall(id=f"offline-{stage}-{i}", name=name, arguments=args)
            for i, (name, args) in enumerate(wanted, start=1)
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        started = time.monotonic()
        streaming = request.on_delta is not None
        # Streaming, the latency is spread over the pieces (the first one comes after a
        # share of it, like a model's time to first token), so a subscriber sees text grow.
        pieces = STREAM_PIECES if streaming else 1
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000 / pieces)
        calls = self.tool_calls(request)
        if calls:
            if pieces > 1 and self.latency_ms:
                await asyncio.sleep(self.latency_ms / 1000 * (pieces - 1) / pieces)
            return Completion(
                text="",
                parsed=None,
                usage=Usage(
                    input_tokens=sum(_tokens(_content_text(m)) for m in request.messages),
                    output_tokens=_tokens(json.dumps([c.arguments for c in calls])),
                ),
                cost_usd=0.0,
                latency_s=time.monotonic() - started,
                provider=self.name,
                model=request.model,
                tool_calls=calls,
                stop_reason=STOP_TOOL_CALLS,
            )
        answer = self.answer(request)
        text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
        parsed = answer if isinstance(answer, dict) and request.json_schema is not None else None
        if streaming:
            for index, piece in enumerate(text_pieces(text, STREAM_PIECES)):
                if index and self.latency_ms:
                    await asyncio.sleep(self.latency_ms / 1000 / pieces)
                else:
                    await asyncio.sleep(0)  # a real stream: other tasks run between pieces
                if self.stamps:
                    piece = f"\u00abt={time.time():.6f}\u00bb{piece}"
                request.on_delta(StreamDelta(piece))
        return Completion(
            text=text,
            parsed=parsed,
            usage=Usage(
                input_tokens=sum(_tokens(_content_text(m)) for m in request.messages),
                output_tokens=_tokens(text),
            ),
            cost_usd=0.0,
            latency_s=time.monotonic() - started,
            provider=self.name,
            model=request.model,
        )
