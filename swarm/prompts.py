"""The messages each agent gets. Everything inserted passes through swarm.redact first.

The user message carries one machine-readable block, `<tekton-context>{json}</tekton-context>`,
with the goal, the stage, the repository facts, the full earlier artifacts, lessons, the
person's note and the attempt, and (in debate rounds and for the mediator) a
`<tekton-transcript>[...]</tekton-transcript>` block. Models read them as plain JSON; the
offline backend parses them (`context_extract`) to build its answers from real inputs.
"""

from __future__ import annotations

import json
import re
from typing import Any

from swarm.context import RepoFacts, StageInput
from swarm.providers.base import Message
from swarm.redact import Labeller, redact
from swarm.stages import stage_get

CONTEXT_OPEN, CONTEXT_CLOSE = "<tekton-context>", "</tekton-context>"
TRANSCRIPT_OPEN, TRANSCRIPT_CLOSE = "<tekton-transcript>", "</tekton-transcript>"
PROMPT_FILES_CAP = 200  # file names shown to a model; file_count stays exact

_JSON_ONLY = (
    "Answer with one JSON object only: no prose, no Markdown fences. It must validate "
    "against the JSON Schema you are given."
)
_DEBATER_SHAPE = (
    "Your answer: position (your proposal or critique, concrete), score {correctness, "
    "stack_fit, ops_risk, reversibility, recency} each a number in [0, 1], risks (list), "
    "checks (list of things to verify), self_confidence in [0, 1], dissent (string or "
    "null), vote {approve: true|false, reason}."
)


def repo_facts_compact(repo: RepoFacts) -> dict[str, Any]:
    """The repository facts a prompt shows: small enough to read, real enough to act on."""
    return {
        "path": repo.path,
        "branch": repo.branch,
        "head": repo.head[:12] if repo.head else None,
        "is_dirty": repo.is_dirty,
        "changed_files": list(repo.changed_files[:50]),
        "file_count": repo.file_count,
        "files": list(repo.files[:PROMPT_FILES_CAP]),
        "languages": dict(repo.languages),
        "test_paths": list(repo.test_paths),
        "readme_excerpt": repo.readme_excerpt,
    }


def _context(inp: StageInput, *, role: str, round: int, label: Labeller) -> dict[str, Any]:
    spec = stage_get(inp.stage)
    ctx = {
        "stage": inp.stage,
        "stage_index": spec.index,
        "produces": spec.produces,
        "role": role,
        "round": round,
        "goal": inp.goal,
        "attempt": inp.attempt,
        "note": inp.note,
        "repo": repo_facts_compact(inp.repo),
        "prior_artifacts": inp.prior_artifacts,
        "lessons": [{"text": x.text, "source": x.source} for x in inp.lessons],
    }
    # Measured by Tekton, not by a model: where the change is and what the tests said.
    if inp.workspace:
        ctx["workspace"] = inp.workspace
    if inp.evidence:
        ctx["test_evidence"] = inp.evidence
    return redact(ctx, labeller=label)


def _dump(value: Any) -> str:
    # A goal or artifact that contains a marker must not end the block early; the JSON
    # escape keeps the value identical once parsed.
    # Compact: whitespace costs tokens, and the C encoder only serves indent=None.
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<tekton-", "\\u003ctekton-").replace("</tekton-", "\\u003c/tekton-")


def _system(inp: StageInput, role: str, extra: str) -> Message:
    spec = stage_get(inp.stage)
    text = (
        f"You are the {role} in stage {spec.index}/9 `{spec.name}` of a Diamond v5 run: a "
        "proponent, a skeptic and a pragmatist debate, a mediator writes the stage's "
        "artifact, and a weighted quorum decides.\n"
        f"Your brief: {spec.briefs[role]}\n"
        f"This stage produces: {spec.produces}.\n{extra}\n{_JSON_ONLY}"
    )
    return Message("system", text)


def _plain(text: str) -> str:
    # Free text outside the JSON blocks must not contain a block marker either.
    return text.replace("<tekton-", "<tekton_").replace("</tekton-", "</tekton_")


def _user(
    inp: StageInput, ctx: dict[str, Any], transcript: list[dict[str, Any]] | None, ask: str
) -> Message:
    parts = [f"Goal: {_plain(ctx['goal'])}"]
    if ctx["note"]:
        parts.append(
            f"A person retried this stage with this note; act on it: {_plain(ctx['note'])}"
        )
    if ctx["lessons"]:
        parts.append(
            "Lessons from earlier runs:\n"
            + "\n".join(f"- {_plain(x['text'])} ({_plain(x['source'])})" for x in ctx["lessons"])
        )
    if inp.files_text:
        parts.append(
            "The files this change is about, as they are at the run's base commit (read "
            "others with the tools where you have them):\n" + _plain(inp.files_text)
        )
    if inp.code_context:
        parts.append(
            "Parts of the repository retrieved as relevant to the goal and the backlog, "
            "each with its path:lines (read more with the file tools where you have them):\n"
            + _plain(redact(inp.code_context))
        )
    parts.append(f"{CONTEXT_OPEN}\n{_dump(ctx)}\n{CONTEXT_CLOSE}")
    if transcript is not None:
        parts.append(
            f"The debate so far:\n{TRANSCRIPT_OPEN}\n{_dump(transcript)}\n{TRANSCRIPT_CLOSE}"
        )
    parts.append(ask)
    return Message("user", "\n\n".join(parts))


def proposal_in_hand(transcript: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The proponent's latest valid answer: what the other debaters vote on."""
    for entry in reversed(transcript):
        if entry.get("role") == "proponent" and entry.get("position"):
            return entry
    return None


def debater_messages(
    inp: StageInput, *, role: str, round: int, rounds: int, transcript: list[dict[str, Any]]
) -> list[Message]:
    """Opening round (round 0, empty transcript) or debate round `round` of `rounds`."""
    label = Labeller()
    ctx = _context(inp, role=role, round=round, label=label)
    if round == 0:
        ask = (
            "Opening round: give your independent take. Vote approve if the stage can go "
            "ahead along the lines you propose, no if it cannot."
        )
        shown = None
    else:
        shown = redact(transcript, labeller=label)
        proposal = proposal_in_hand(shown)
        where = f"the proponent's round {proposal['round']} position" if proposal else "none yet"
        ask = (
            f"Debate round {round} of {rounds}. Answer the others' points, refine your "
            f"position, and vote on the proposal in hand ({where}): approve only if you "
            "would ship the stage's artifact built on it."
        )
    system = _system(inp, role, _DEBATER_SHAPE)
    return [system, _user(inp, ctx, shown, ask)]


def mediator_messages(
    inp: StageInput, *, transcript: list[dict[str, Any]], artifact_schema: dict[str, Any]
) -> list[Message]:
    label = Labeller()
    ctx = _context(inp, role="mediator", round=-1, label=label)
    shown = redact(transcript, labeller=label)
    extra = (
        "Answer {artifact, status (approve|revise|block), rationale, dissent, risks, "
        "checklist, confidence in [0, 1], votes, loops_run}. `artifact` must validate "
        "against this stage's artifact schema:\n" + _dump(artifact_schema)
    )
    ask = "Reconcile the debate into the stage's artifact."
    return [_system(inp, "mediator", extra), _user(inp, ctx, shown, ask)]


def draft_messages(inp: StageInput, *, artifact_schema: dict[str, Any]) -> list[Message]:
    """Consensus-free: the proponent alone drafts the artifact; executable checks decide."""
    label = Labeller()
    ctx = _context(inp, role="proponent", round=0, label=label)
    extra = (
        "This stage is consensus-free: you alone draft the artifact and executable checks "
        "(schema validation; for code, `git apply --check` of your diff) decide. Answer with "
        "the artifact itself, matching this schema:\n" + _dump(artifact_schema)
    )
    return [_system(inp, "proponent", extra), _user(inp, ctx, None, "Draft the artifact.")]


def repair_messages(messages: list[Message], *, bad_text: str, error: str) -> list[Message]:
    """The original conversation, the invalid answer, and the validation error to fix."""
    return [
        *messages,
        Message("assistant", redact(bad_text)[:20000]),
        Message(
            "user",
            "Your answer did not validate: "
            + redact(error)
            + "\nAnswer again with the complete corrected JSON object only.",
        ),
    ]


_BLOCK = re.compile(re.escape(CONTEXT_OPEN) + r"\s*(.*?)\s*" + re.escape(CONTEXT_CLOSE), re.DOTALL)
_TRANSCRIPT = re.compile(
    re.escape(TRANSCRIPT_OPEN) + r"\s*(.*?)\s*" + re.escape(TRANSCRIPT_CLOSE), re.DOTALL
)


def context_extract(messages: list[Message] | tuple[Message, ...]) -> dict[str, Any] | None:
    """The context block of the first user message that has one (None if absent)."""
    for m in messages:
        if m.role == "user" and (found := _BLOCK.search(m.text)):
            try:
                data = json.loads(found.group(1))
            except json.JSONDecodeError:
                return None
            return data if isinstance(data, dict) else None
    return None


def transcript_extract(messages: list[Message] | tuple[Message, ...]) -> list[dict[str, Any]]:
    for m in messages:
        if m.role == "user" and (found := _TRANSCRIPT.search(m.text)):
            try:
                data = json.loads(found.group(1))
            except json.JSONDecodeError:
                return []
            return data if isinstance(data, list) else []
    return []
