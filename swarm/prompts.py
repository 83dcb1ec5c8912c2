"""The messages each agent gets. Everything inserted passes through swarm.redact first.

Every prompt is laid out for the vendors' prompt caches: its first SHARED_MESSAGES
messages are the part all calls of one kind in a stage attempt share, byte for byte (the
system text, the stage's instructions, then a user message with the goal, the
repository context, the earlier artifacts and the retrieved code), and only the last
message differs per call (the role and its brief, the round, the transcript so far, the
ask). The transcript comes first in that last message, so the three calls of a round
share it too, and a round's transcript starts with the one before it.

The shared user message carries one machine-readable block,
`<tekton-context>{json}</tekton-context>` (goal, stage, repository facts, the full
earlier artifacts, lessons, the person's note, the attempt); the last message carries
`<tekton-turn>{"role", "round"}</tekton-turn>` and (in debate rounds and for the
mediator) `<tekton-transcript>[...]</tekton-transcript>`. Models read them as plain
JSON; the offline backend parses them (`context_extract`) to build its answers from real
inputs.
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
TURN_OPEN, TURN_CLOSE = "<tekton-turn>", "</tekton-turn>"
# The messages every prompt starts with that its stage's calls of one kind share: what a
# request's cache_prefix covers.
SHARED_MESSAGES = 2
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


def _context(inp: StageInput, *, label: Labeller) -> dict[str, Any]:
    # No role or round here: this block is in the prefix every call of the stage shares.
    spec = stage_get(inp.stage)
    ctx = {
        "stage": inp.stage,
        "stage_index": spec.index,
        "produces": spec.produces,
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


def _system(inp: StageInput, extra: str) -> Message:
    spec = stage_get(inp.stage)
    text = (
        f"You take part in stage {spec.index}/9 `{spec.name}` of a Diamond v5 run: a "
        "proponent, a skeptic and a pragmatist debate, a mediator writes the stage's "
        "artifact, and a weighted quorum decides. Your role and its brief are in the last "
        "message.\n"
        f"This stage produces: {spec.produces}.\n{extra}\n{_JSON_ONLY}"
    )
    return Message("system", text)


def _plain(text: str) -> str:
    # Free text outside the JSON blocks must not contain a block marker either.
    return text.replace("<tekton-", "<tekton_").replace("</tekton-", "</tekton_")


def _shared(inp: StageInput, ctx: dict[str, Any]) -> Message:
    """The user message every call of the stage starts with: what the stage works from."""
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
    return Message("user", "\n\n".join(parts))


def _turn(
    inp: StageInput, *, role: str, round: int, transcript: list[dict[str, Any]] | None, ask: str
) -> Message:
    """The last message, the only one that differs between the stage's calls."""
    parts = []
    if transcript is not None:
        parts.append(
            f"The debate so far:\n{TRANSCRIPT_OPEN}\n{_dump(transcript)}\n{TRANSCRIPT_CLOSE}"
        )
    brief = stage_get(inp.stage).briefs[role]
    parts.append(f"You are the {role}. Your brief: {brief}")
    parts.append(f"{TURN_OPEN}{_dump({'role': role, 'round': round})}{TURN_CLOSE}")
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
    ctx = _context(inp, label=label)
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
    return [
        _system(inp, _DEBATER_SHAPE),
        _shared(inp, ctx),
        _turn(inp, role=role, round=round, transcript=shown, ask=ask),
    ]


def mediator_messages(
    inp: StageInput, *, transcript: list[dict[str, Any]], artifact_schema: dict[str, Any]
) -> list[Message]:
    label = Labeller()
    ctx = _context(inp, label=label)
    shown = redact(transcript, labeller=label)
    extra = (
        "Answer {artifact, status (approve|revise|block), rationale, dissent, risks, "
        "checklist, confidence in [0, 1], votes, loops_run}. `artifact` must validate "
        "against this stage's artifact schema:\n" + _dump(artifact_schema)
    )
    ask = "Reconcile the debate into the stage's artifact."
    return [
        _system(inp, extra),
        _shared(inp, ctx),
        _turn(inp, role="mediator", round=-1, transcript=shown, ask=ask),
    ]


def draft_messages(inp: StageInput, *, artifact_schema: dict[str, Any]) -> list[Message]:
    """Consensus-free: the proponent alone drafts the artifact; executable checks decide."""
    ctx = _context(inp, label=Labeller())
    extra = (
        "This stage is consensus-free: you alone draft the artifact and executable checks "
        "(schema validation; for code, `git apply --check` of your diff) decide. Answer with "
        "the artifact itself, matching this schema:\n" + _dump(artifact_schema)
    )
    return [
        _system(inp, extra),
        _shared(inp, ctx),
        _turn(inp, role="proponent", round=0, transcript=None, ask="Draft the artifact."),
    ]


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
_TURN = re.compile(re.escape(TURN_OPEN) + r"\s*(.*?)\s*" + re.escape(TURN_CLOSE), re.DOTALL)


def _first_block(
    pattern: re.Pattern[str], messages: list[Message] | tuple[Message, ...], kind: type
) -> Any:
    for m in messages:
        if m.role == "user" and (found := pattern.search(m.text)):
            try:
                data = json.loads(found.group(1))
            except json.JSONDecodeError:
                return None
            return data if isinstance(data, kind) else None
    return None


def context_extract(messages: list[Message] | tuple[Message, ...]) -> dict[str, Any] | None:
    """The context block of the first user message that has one (None if absent), with
    the role and round of the turn block merged in where there is one."""
    data = _first_block(_BLOCK, messages, dict)
    if data is None:
        return None
    turn = _first_block(_TURN, messages, dict) or {}
    return {**data, **{k: turn[k] for k in ("role", "round") if k in turn}}


def transcript_extract(messages: list[Message] | tuple[Message, ...]) -> list[dict[str, Any]]:
    return _first_block(_TRANSCRIPT, messages, list) or []
