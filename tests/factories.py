"""factory_boy factories for run history."""

from __future__ import annotations

from typing import Any

import factory
from django.conf import settings
from django.contrib.auth import get_user_model

from runs.models import Artifact, LlmCall, Run, RunEvent, StageRun
from swarm.stages import ROLES, STAGE_NAMES, stage_get

DEFAULT_MODEL = "anthropic/claude-opus-4.1"


def frozen_config(
    stages: list[str] | None = None,
    *,
    rounds: int = 2,
    consensus_free: list[str] | None = None,
    budget_tokens: int = 0,
    budget_cost_usd: float = 0.0,
    model: str = DEFAULT_MODEL,
    llm_backend: str = "offline",
) -> dict[str, Any]:
    """A Run.config in the shape config_profiles.services.profile_resolve freezes."""
    stages = list(stages or STAGE_NAMES)
    return {
        "profile": "diamond-v5",
        "stages": stages,
        "models": {s: {role: model for role in ROLES} for s in stages},
        "backends": {model: "offline"},
        "rounds": rounds,
        "quorum": 0.6667,
        "threshold": 0.7,
        "consensus_free": list(consensus_free or []),
        "budget_tokens": budget_tokens,
        "budget_cost_usd": budget_cost_usd,
        "artifact_root": str(settings.TEKTON_ARTIFACT_ROOT),
        "routes": [],
        "llm_backend": llm_backend,
        "record_path": None,
        "replay_path": None,
    }


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")


class RunFactory(factory.django.DjangoModelFactory):
    """A queued run over `repo_path`; `with_stages=True` (default) adds its StageRuns."""

    class Meta:
        model = Run
        skip_postgeneration_save = True

    goal = "Add a health endpoint"
    repo_path = "/tmp/repo"
    profile_name = "diamond-v5"
    stage_from = "plan"
    stage_to = "release"
    config = factory.LazyAttribute(
        lambda o: frozen_config(
            list(STAGE_NAMES[stage_get(o.stage_from).index - 1 : stage_get(o.stage_to).index])
        )
    )

    @factory.post_generation
    def with_stages(obj, create, extracted, **kwargs):
        if not create or extracted is False:
            return
        for name in obj.config["stages"]:
            StageRun.objects.create(run=obj, stage=name, position=stage_get(name).index)


class StageRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StageRun

    run = factory.SubFactory(RunFactory, with_stages=False)
    stage = "plan"
    position = factory.LazyAttribute(lambda o: stage_get(o.stage).index)


class RunEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RunEvent

    run = factory.SubFactory(RunFactory, with_stages=False)
    seq = factory.Sequence(lambda n: n + 1)
    kind = "stage.progress"
    stage = "plan"
    payload = factory.LazyFunction(dict)


class ArtifactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Artifact

    run = factory.SubFactory(RunFactory, with_stages=False)
    stage = "plan"
    kind = Artifact.Kind.JSON
    name = factory.LazyAttribute(
        lambda o: stage_get(o.stage).artifact_file if o.stage else "x.json"
    )
    path = factory.LazyAttribute(lambda o: f"run-{o.run.pk}/{o.name}")
    sha256 = "0" * 64
    size = 0
    content = None


class LlmCallFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LlmCall

    run = factory.SubFactory(RunFactory, with_stages=False)
    stage = "plan"
    role = "proponent"
    round = 0
    provider = "offline"
    model = DEFAULT_MODEL
    input_tokens = 100
    output_tokens = 50
