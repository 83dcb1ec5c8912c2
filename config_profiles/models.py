"""Model profiles: which model each role of each stage uses, and the consensus settings."""

from __future__ import annotations

from django.db import models

DEFAULT_PROFILE_NAME = "diamond-v5"


class Profile(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    # {"default": "anthropic/claude-opus-4.1", "stages": {"plan": {"proponent": "openai/gpt-4o"}}}
    # A role with no entry under its stage uses "default".
    stage_models = models.JSONField(default=dict)
    rounds = models.PositiveSmallIntegerField(default=2)
    quorum = models.FloatField(default=2 / 3)
    threshold = models.FloatField(default=0.70)
    consensus_free = models.JSONField(default=list, blank=True)  # stage names
    budget_tokens = models.PositiveBigIntegerField(default=0)  # per run; 0 = no limit
    budget_cost_usd = models.DecimalField(
        max_digits=10, decimal_places=2, default=0
    )  # per run; 0 = no limit
    # Prices of models the built-in table (swarm/providers/pricing.py) does not know, or
    # prices that differ: {"x-ai/grok-4": {"input": 3.0, "output": 15.0}} in $/M tokens.
    # A cost budget needs a price for every model that is not answered offline.
    prices = models.JSONField(default=dict, blank=True)
    # Where artifacts go; blank = TEKTON_ARTIFACT_ROOT. Resolved under the data dir.
    artifact_root = models.CharField(max_length=1024, blank=True, default="")
    # Extra routes tried before the built-in ones: [{"match": "x-ai/*", "backend": "openai",
    #  "base_url": "...", "key_env": "OPENROUTER_API_KEY"}]. Keys are named, never stored.
    routes = models.JSONField(default=list, blank=True)
    # Repository work: which role of which stage may call which tool ({stage: {role:
    # [tool, ...]}}; {} = the defaults of swarm.tools), how many calls a debater's turn
    # may make, how many test runs a stage may start, and the sandbox's limits
    # ({"wall_s", "cpu_s", "processes", "memory_mb"}; {} = the defaults).
    tool_grants = models.JSONField(default=dict, blank=True)
    max_tool_calls = models.PositiveSmallIntegerField(default=8)
    max_test_runs = models.PositiveSmallIntegerField(default=3)
    sandbox_limits = models.JSONField(default=dict, blank=True)
    # On one priced model, the opening proponent goes first so the other two read its
    # prompt-cache prefix: cheaper input, one call of latency more per debate stage.
    cache_stagger = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_PROFILE_NAME


class LearnedCapability(models.Model):
    """What a model server refused (swarm.providers.capabilities), kept so every process
    (web, workers, the CLI) sends what that server takes from the first call on, and the
    checks page shows it. One row per backend, base URL and model."""

    backend = models.CharField(max_length=40)
    base_url = models.CharField(max_length=500, blank=True, default="")
    model = models.CharField(max_length=200)
    refused = models.JSONField(default=list)  # feature names, in the order refused
    detail = models.TextField(blank=True, default="")  # the server's words, redacted
    learned_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["backend", "base_url", "model"], name="learned_capability_unique"
            )
        ]
        ordering = ["backend", "base_url", "model"]

    def __str__(self) -> str:
        return f"{self.backend} {self.base_url} {self.model}: refused {', '.join(self.refused)}"
