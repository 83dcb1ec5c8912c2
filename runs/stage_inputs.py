"""What a stage starts from: its input (goal, repository facts, the artifacts of the stages
it depends on, lessons, a person's note), its configuration (models, consensus, what is
left of the run's budgets) and the completer that answers its calls.

Read-only: nothing here writes to the database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from typing import Any

from django.conf import settings

from config_profiles.capabilities import capability_memory_attach
from runs.artifacts_store import artifact_read_json
from runs.budgets import budget_limits
from runs.models import Artifact, Run, StageRun
from runs.retrieval import StageContext, stage_context_build
from runs.sharedmem import rate_limiter_get, shared_memory
from runs.stage_work import RunStageWork, code_files_text, stage_workspace_facts
from swarm.budget import budget_check
from swarm.context import RepoFacts, StageConfig, StageInput
from swarm.providers.router import Router, router_build
from swarm.repo import repo_facts
from swarm.stages import stage_ancestors

logger = logging.getLogger("tekton.runs.stage_inputs")

_FACTS_CACHE: OrderedDict[tuple[int, str], RepoFacts] = OrderedDict()
_FACTS_LOCK = threading.Lock()


FACTS_TTL_S = 3600.0


def _facts_key(repo_path: str, commit: str) -> str:
    return f"facts:{hashlib.sha256(repo_path.encode()).hexdigest()[:24]}:{commit}"


def _facts_load(data: Any) -> RepoFacts | None:
    try:
        fields = {f.name for f in dataclasses.fields(RepoFacts)}
        if not isinstance(data, dict) or set(data) != fields:
            return None  # written by another version of RepoFacts: compute again
        return RepoFacts(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except TypeError:
        return None


def run_repo_facts(run: Run) -> RepoFacts:
    """The repository as the run first saw it, read once per run and process: a handful
    of git subprocesses cost more than the rest of a stage's orchestration together.
    Facts read from a clean checkout at the run's base commit are shared with every worker
    for an hour (runs/sharedmem.py, keyed by repository and commit), so the stages of a run
    on many workers, and other runs on the same commit, read them once."""
    key = (run.pk, run.repo_path)
    with _FACTS_LOCK:
        facts = _FACTS_CACHE.get(key)
    if facts is None and run.base_commit:
        facts = _facts_load(shared_memory().get_json(_facts_key(run.repo_path, run.base_commit)))
    if facts is None:
        facts = repo_facts(run.repo_path)
        # A dirty checkout's facts name its uncommitted changes: those are this checkout's
        # moment, not the commit's, so only a clean checkout's facts are shared.
        if run.base_commit and facts.head == run.base_commit and not facts.is_dirty:
            shared_memory().set_json(
                _facts_key(run.repo_path, run.base_commit),
                dataclasses.asdict(facts),
                ttl_s=FACTS_TTL_S,
            )
    with _FACTS_LOCK:
        _FACTS_CACHE[key] = facts
        while len(_FACTS_CACHE) > 256:
            _FACTS_CACHE.popitem(last=False)
    return facts


def stage_input_build(
    run: Run,
    stage: StageRun,
    *,
    work: RunStageWork | None = None,
    context: StageContext | None = None,
    prior: dict[str, dict[str, Any]] | None = None,
) -> StageInput:
    """The engine's input for `stage`. It sees exactly the artifacts of the stages it
    depends on (directly or through them): threat sees code and what code saw, never
    review's, whichever of the two side-by-side stages finished first. With the stage's
    repository work: the change's facts (after code) and, for code, the contents of the
    files its backlog names. `prior` is stage_prior_artifacts(run, stage) when the caller
    read it already."""
    if prior is None:
        prior = stage_prior_artifacts(run, stage.stage)
    if context is None:
        context = stage_context_build(run, stage.stage, prior)
    repo = run_repo_facts(run)
    files_text = ""
    if work is not None and stage.stage == "code":
        files_text = code_files_text(work, paths_named(prior, repo.files))
    workspace = None
    if stage.stage != "code":
        # A stage after code has read code's artifact with its prior ones: no second read.
        after_code = "code" in stage_ancestors(stage.stage)
        workspace = (
            stage_workspace_facts(run, prior.get("code"))
            if after_code
            else stage_workspace_facts(run)
        )
    return StageInput(
        stage=stage.stage,
        goal=run.goal,
        repo=repo,
        prior_artifacts=prior,
        lessons=tuple(context.lessons),
        note=stage.note,
        attempt=stage.attempt,
        run_id=run.pk,
        workspace=workspace,
        files_text=files_text,
        code_context=context.code_text,
    )


def stage_prior_artifacts(run: Run, stage: str) -> dict[str, dict[str, Any]]:
    """The artifacts of the stages `stage` depends on (directly or through them)."""
    prior: dict[str, dict[str, Any]] = {}
    earlier = Artifact.objects.filter(
        run=run, kind=Artifact.Kind.JSON, stage__in=stage_ancestors(stage)
    ).only("run_id", "stage", "path", "content", "text")
    for artifact in earlier:
        artifact.run = run  # in hand: no join, no second read of the run row
        data = artifact_read_json(artifact)
        if data is not None:
            prior[artifact.stage] = data
    return prior


def paths_named(artifacts: dict[str, dict[str, Any]], files: tuple[str, ...]) -> list[str]:
    """The repository's tracked files that the earlier artifacts (the backlog, the plan)
    mention, backlog first, each once."""
    order = ("plan_update", "research", "plan")
    texts = [json.dumps(artifacts[name], ensure_ascii=False) for name in order if name in artifacts]
    found: list[str] = []
    for text in texts:
        found += [f for f in files if f in text and f not in found]
    return found


def stage_config_build(run: Run, stage: str) -> StageConfig:
    """The stage's models and consensus settings, with what is left of the run's budgets.
    Raises BudgetExceeded ("budget reached: 412,000 of 400,000 tokens") when a budget
    is already used up."""
    config = run.config or {}
    budget_tokens, budget_cost = budget_limits(config)
    budget_check(
        spent_tokens=run.total_tokens,
        spent_cost=float(run.cost_usd),
        limit_tokens=budget_tokens,
        limit_cost=budget_cost,
    )
    left_tokens = None if budget_tokens is None else budget_tokens - run.total_tokens
    left_cost = None if budget_cost is None else budget_cost - float(run.cost_usd)
    models = (config.get("models") or {}).get(stage)
    if not models:
        raise ValueError(f"run {run.pk} has no models configured for stage {stage!r}")
    return StageConfig(
        models=dict(models),
        rounds=int(config.get("rounds", 2)),
        quorum=float(config.get("quorum", 2 / 3)),
        threshold=float(config.get("threshold", 0.70)),
        consensus_free=stage in (config.get("consensus_free") or []),
        sequential=config.get("schedule") == "sequential",
        stream=config.get("stream", True) is not False,
        cache_stagger=config.get("cache_stagger", True) is not False,
        budget_tokens=left_tokens,
        budget_cost_usd=left_cost,
        timeout=float(settings.TEKTON_LLM_TIMEOUT_SECONDS),
    )


def completer_build(config: dict[str, Any]) -> Router:
    """The router that answers the stage's calls, from the run's frozen configuration and
    the keys in this process's environment."""
    capability_memory_attach()  # what servers refused, known to every process
    return router_build(
        routes=config.get("routes") or None,
        env=dict(os.environ),
        backend_override=config.get("llm_backend") or None,
        replay_path=config.get("replay_path"),
        record_path=config.get("record_path"),
        prices={m: tuple(p) for m, p in (config.get("prices") or {}).items()},
        rate_limiter=rate_limiter_get(),
    )
