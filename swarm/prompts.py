"""The messages each agent gets. Everything inserted passes through swarm.redact first.

Every prompt is laid out for the vendors' prompt caches, most widely shared first:
the system text (the same for the whole run), a user message with the goal, the
repository facts and the earlier artifacts in stage order (the same for every call of
the run until a stage appends its artifact: RUN_MESSAGES), a user message with the
stage's own context (the same for every call of one kind in the stage attempt:
SHARED_MESSAGES), one user message per debate round so far (round k's prompt repeats
round k-1's and adds one), and last the turn: the role, its brief, the answer's shape
and the ask.

The run message carries `<tekton-context>{goal, repo}</tekton-context>` and one
`<tekton-artifact>{stage, artifact}</tekton-artifact>` per earlier artifact; the stage
message a second `<tekton-context>` (stage, attempt, note, lessons, workspace, test
evidence); each round message `<tekton-transcript>[...]</tekton-transcript>`; the turn
`<tekton-turn>{"role", "round", "answer"}</tekton-turn>`. Models read them as plain JSON; the
offline backend parses them back (`context_extract`, `transcript_extract`) to build its
answers from real inputs.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import OrderedDict
from typing import Any

from swarm.context import RepoFacts, StageInput
from swarm.providers.base import Message, TextBlock
from swarm.redact import Labeller, redact
from swarm.stages import stage_get

CONTEXT_OPEN, CONTEXT_CLOSE = "<tekton-context>", "</tekton-context>"
TRANSCRIPT_OPEN, TRANSCRIPT_CLOSE = "<tekton-transcript>", "</tekton-transcript>"
TURN_OPEN, TURN_CLOSE = "<tekton-turn>", "</tekton-turn>"
ARTIFACT_OPEN, ARTIFACT_CLOSE = "<tekton-artifact>", "</tekton-artifact>"
# The messages every prompt starts with that every call of the run shares (system text,
# then the goal, repository and earlier artifacts), and those every call of one kind in a
# stage shares (the stage's own context after them). Then one message per debate round
# so far, then the turn.
RUN_MESSAGES = 2
SHARED_MESSAGES = 3
PROMPT_FILES_CAP = 200
# The answers' schema names (a backend's answer tool is named after them).
DEBATER_ANSWER = "debater_answer"
MEDIATOR_ANSWER = "mediator_answer"  # file names shown to a model; file_count stays exact

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


def draft_answer_name(stage: str) -> str:
    return f"{stage}_artifact"


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


def _run_context(inp: StageInput, *, label: Labeller) -> dict[str, Any]:
    # What every stage of the run works from: in the prefix every call of the run shares.
    return redact({"goal": inp.goal, "repo": repo_facts_compact(inp.repo)}, labeller=label)


def _artifacts(inp: StageInput, *, label: Labeller) -> list[tuple[str, Any]]:
    # In stage order, so stage k+1's prompt starts with stage k's artifacts as stage k
    # showed them (only the newest one is new to the cache).
    order = sorted(inp.prior_artifacts, key=lambda name: stage_get(name).index)
    return [(name, redact(inp.prior_artifacts[name], labeller=label)) for name in order]


def _stage_context(inp: StageInput, *, label: Labeller) -> dict[str, Any]:
    # No role or round here: this block is in the prefix every call of the stage shares.
    spec = stage_get(inp.stage)
    ctx = {
        "stage": inp.stage,
        "stage_index": spec.index,
        "produces": spec.produces,
        "attempt": inp.attempt,
        "note": inp.note,
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


_SYSTEM = (
    "You take part in a Diamond v5 run of nine stages: in each, a proponent, a skeptic and "
    "a pragmatist debate, a mediator writes the stage's artifact, and a weighted quorum "
    "decides. The run's goal, repository and earlier artifacts come first, then the "
    "stage, then the debate so far; your role, its brief and the answer's shape are in "
    "the last message.\n" + _JSON_ONLY
)


def _system() -> Message:
    # One text for every call of the run: tools and system are the prefix all stages share.
    return Message("system", _SYSTEM)


def _plain(text: str) -> str:
    # Free text outside the JSON blocks must not contain a block marker either.
    return text.replace("<tekton-", "<tekton_").replace("</tekton-", "</tekton_")


def _run_message(inp: StageInput, label: Labeller) -> Message:
    """What the run works from, the same for every call of every stage (until a stage adds
    its artifact at the end): the goal, the repository, the earlier artifacts."""
    ctx = _run_context(inp, label=label)
    blocks = [
        TextBlock(f"Goal: {_plain(ctx['goal'])}\n\n{CONTEXT_OPEN}\n{_dump(ctx)}\n{CONTEXT_CLOSE}")
    ]
    # One block per artifact: a block's end is where Anthropic's cache can find what the
    # stage before wrote (its run part ended one artifact earlier).
    for name, artifact in _artifacts(inp, label=label):
        body = _dump({"stage": name, "artifact": artifact})
        blocks.append(
            TextBlock(f"The {name} stage's artifact:\n{ARTIFACT_OPEN}{body}{ARTIFACT_CLOSE}")
        )
    return Message("user", tuple(blocks))


def _stage_message(inp: StageInput, label: Labeller) -> Message:
    """What the stage works from: the same for every call of one kind in the stage."""
    spec = stage_get(inp.stage)
    ctx = _stage_context(inp, label=label)
    parts = [f"This is stage {spec.index}/9 `{spec.name}`. It produces: {spec.produces}."]
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


def _transcript_messages(transcript: list[dict[str, Any]]) -> list[Message]:
    """One message per round, oldest first: round k's prompt repeats round k-1's messages
    and adds one, so each round's part is a cacheable step of the prefix."""
    rounds: dict[int, list[dict[str, Any]]] = {}
    for entry in transcript:
        rounds.setdefault(int(entry.get("round", 0)), []).append(entry)
    return [
        Message(
            "user",
            f"The debate, round {rnd}:\n{TRANSCRIPT_OPEN}\n{_dump(entries)}\n{TRANSCRIPT_CLOSE}",
        )
        for rnd, entries in sorted(rounds.items())
    ]


def _turn(inp: StageInput, *, role: str, round: int, answer: str, shape: str, ask: str) -> Message:
    """The last message, the only one that differs between the calls of a round. `answer`
    names the answer's schema: where a stage's calls are offered every answer tool of the
    stage (one cacheable list), it says which one is this call's."""
    brief = stage_get(inp.stage).briefs[role]
    turn = {"role": role, "round": round, "answer": answer}
    parts = [
        f"You are the {role}. Your brief: {brief}",
        f"{TURN_OPEN}{_dump(turn)}{TURN_CLOSE}",
        f"Your answer is a `{answer}`.",
        shape,
        ask,
    ]
    return Message("user", "\n\n".join(parts))


def proposal_in_hand(transcript: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The proponent's latest valid answer: what the other debaters vote on."""
    for entry in reversed(transcript):
        if entry.get("role") == "proponent" and entry.get("position"):
            return entry
    return None


# A stage's calls share its StageInput, so its head (system, run and stage messages, a
# third of a debater's prompt building) is built once per stage, not once per call: kept
# by identity for the inputs of the stages running now (the entry holds its input, so
# an id is never taken for another's).
_HEADS_KEPT = 128
_heads: OrderedDict[int, tuple[StageInput, tuple[Message, ...], Labeller]] = OrderedDict()
_heads_lock = threading.Lock()


def _head(inp: StageInput, label: Labeller) -> list[Message]:
    # Built before the transcript is redacted: the labeller numbers secrets in the order
    # it meets them, so the prefix's labels never depend on what comes after it. `label`
    # is a new Labeller; it leaves with the head's labels, as if it had built the head.
    with _heads_lock:
        hit = _heads.get(id(inp))
        if hit is not None and hit[0] is inp:
            _heads.move_to_end(id(inp))
    if hit is None or hit[0] is not inp:
        built = Labeller()
        messages = (_system(), _run_message(inp, built), _stage_message(inp, built))
        hit = (inp, messages, built)
        with _heads_lock:
            _heads[id(inp)] = hit
            while len(_heads) > _HEADS_KEPT:
                _heads.popitem(last=False)
    label.seen.update(hit[2].seen)
    label.counts.update(hit[2].counts)
    return list(hit[1])


def debater_messages(
    inp: StageInput, *, role: str, round: int, rounds: int, transcript: list[dict[str, Any]]
) -> list[Message]:
    """Opening round (round 0, empty transcript) or debate round `round` of `rounds`."""
    label = Labeller()
    head = _head(inp, label)
    if round == 0:
        ask = (
            "Opening round: give your independent take. Vote approve if the stage can go "
            "ahead along the lines you propose, no if it cannot."
        )
        shown: list[dict[str, Any]] = []
    else:
        shown = redact(transcript, labeller=label)
        proposal = proposal_in_hand(shown)
        where = f"the proponent's round {proposal['round']} position" if proposal else "none yet"
        ask = (
            f"Debate round {round} of {rounds}. Answer the others' points, refine your "
            f"position, and vote on the proposal in hand ({where}): approve only if you "
            "would ship the stage's artifact built on it."
        )
    turn = _turn(inp, role=role, round=round, answer=DEBATER_ANSWER, shape=_DEBATER_SHAPE, ask=ask)
    return [*head, *_transcript_messages(shown), turn]


def mediator_messages(
    inp: StageInput, *, transcript: list[dict[str, Any]], artifact_schema: dict[str, Any]
) -> list[Message]:
    label = Labeller()
    head = _head(inp, label)
    shown = redact(transcript, labeller=label)
    shape = (
        "Answer {artifact, status (approve|revise|block), rationale, dissent, risks, "
        "checklist, confidence in [0, 1], votes, loops_run}. `artifact` must validate "
        "against this stage's artifact schema:\n" + _dump(artifact_schema)
    )
    ask = "Reconcile the debate into the stage's artifact."
    turn = _turn(inp, role="mediator", round=-1, answer=MEDIATOR_ANSWER, shape=shape, ask=ask)
    return [*head, *_transcript_messages(shown), turn]


def draft_messages(inp: StageInput, *, artifact_schema: dict[str, Any]) -> list[Message]:
    """Consensus-free: the proponent alone drafts the artifact; executable checks decide."""
    head = _head(inp, Labeller())
    shape = (
        "This stage is consensus-free: you alone draft the artifact and executable checks "
        "(schema validation; for code, `git apply --check` of your diff) decide. Answer with "
        "the artifact itself, matching this schema:\n" + _dump(artifact_schema)
    )
    turn = _turn(
        inp,
        role="proponent",
        round=0,
        answer=draft_answer_name(inp.stage),
        shape=shape,
        ask="Draft the artifact.",
    )
    return [*head, turn]


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
_ARTIFACT = re.compile(
    re.escape(ARTIFACT_OPEN) + r"\s*(.*?)\s*" + re.escape(ARTIFACT_CLOSE), re.DOTALL
)
_TRANSCRIPT = re.compile(
    re.escape(TRANSCRIPT_OPEN) + r"\s*(.*?)\s*" + re.escape(TRANSCRIPT_CLOSE), re.DOTALL
)
_TURN = re.compile(re.escape(TURN_OPEN) + r"\s*(.*?)\s*" + re.escape(TURN_CLOSE), re.DOTALL)


def _blocks(
    pattern: re.Pattern[str], messages: list[Message] | tuple[Message, ...], kind: type
) -> list[Any]:
    """Every block of `pattern` in the user messages, in order (unparseable ones left out).
    Shared with earlier callers: read them, do not change them."""
    found = []
    for m in messages:
        if m.role == "user":
            found.extend(data for data in _parsed_blocks(pattern, m.text) if isinstance(data, kind))
    return found


@functools.lru_cache(maxsize=512)
def _parsed_blocks(pattern: re.Pattern[str], text: str) -> tuple[Any, ...]:
    # Every call of a stage repeats its head and the rounds before: each is parsed once.
    found = []
    for match in pattern.finditer(text):
        try:
            found.append(json.loads(match.group(1)))
        except json.JSONDecodeError:
            continue
    return tuple(found)


def context_extract(messages: list[Message] | tuple[Message, ...]) -> dict[str, Any] | None:
    """The run's and the stage's context blocks merged (None if there is none), the
    earlier artifacts as `prior_artifacts`, and the role, round and answer (the schema's
    name) of the turn block."""
    blocks = _blocks(_BLOCK, messages, dict)
    if not blocks:
        return None
    data: dict[str, Any] = {"prior_artifacts": {}}
    for block in blocks:
        data.update(block)
    for entry in _blocks(_ARTIFACT, messages, dict):
        if isinstance(entry.get("stage"), str):
            data["prior_artifacts"][entry["stage"]] = entry.get("artifact")
    turn = next(iter(_blocks(_TURN, messages, dict)), {})
    return {**data, **{k: turn[k] for k in ("role", "round", "answer") if k in turn}}


def transcript_extract(messages: list[Message] | tuple[Message, ...]) -> list[dict[str, Any]]:
    """The debate so far: every round's transcript block, in order."""
    return [entry for block in _blocks(_TRANSCRIPT, messages, list) for entry in block]
