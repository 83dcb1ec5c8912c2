"""Model profiles: validation, the writes a person asks for, and freezing a profile into a run.

Every write goes through here (the admin form and the API call `profile_validate`, so a bad
value is refused the same way everywhere). `profile_resolve` turns a profile plus a run's
choices into the frozen configuration stored on `Run.config`; later profile edits never
change a past run.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from config_profiles.models import DEFAULT_PROFILE_NAME, Profile
from swarm.stages import ROLES, STAGE_NAMES
from tekton_site.errors import FieldError

# Every key variable the built-in routes read. Used to ask the router "is there a route at
# all?" independently of which keys happen to be set on this machine.
KNOWN_KEY_ENVS = (
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "OPENROUTER_API_KEY",
    "PORTKEY_API_KEY",
    "AIMLAPI_API_KEY",
)
LLM_BACKEND_MODES = ("auto", "offline", "replay")
MAX_ROUNDS = 5
PROFILE_FIELDS = (
    "name",
    "description",
    "stage_models",
    "rounds",
    "quorum",
    "threshold",
    "consensus_free",
    "budget_tokens",
    "budget_cost_usd",
    "artifact_root",
    "routes",
    "tool_grants",
    "max_tool_calls",
    "max_test_runs",
    "sandbox_limits",
    "prices",
    "cache_stagger",
)
MAX_TOOL_CALLS = 50
MAX_TEST_RUNS = 20
SANDBOX_LIMIT_FIELDS = ("wall_s", "cpu_s", "processes", "memory_mb")

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._:/+-]*$")
_SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")


# --- validation ---------------------------------------------------------------------------


def _check_routes(routes: Any) -> list[dict[str, Any]]:
    """The profile's routes, checked by the router's own rules (one source of truth)."""
    if routes in (None, ""):
        return []
    from swarm.providers.base import NoRouteError
    from swarm.providers.router import routes_validate

    try:
        routes_validate(routes)
    except NoRouteError as err:
        raise FieldError("routes", str(err)) from None
    # Store what the person wrote (validated), not the filled-in defaults.
    return [dict(route) for route in routes]


def _route_check(model: str, field: str, routes: list[dict[str, Any]]) -> None:
    """Raise FieldError unless some route (profile or built-in) serves `model`.

    Keys are not the question here (they are checked when a run is planned), so the router
    is asked with every key variable marked as set.
    """
    if not isinstance(model, str) or not _MODEL_ID.match(model):
        raise FieldError(field, f"model id must be vendor/model, got {model!r}")
    from swarm.providers.base import NoRouteError
    from swarm.providers.router import router_build

    env = {name: "set" for name in KNOWN_KEY_ENVS}
    env.update({r["key_env"]: "set" for r in routes if r.get("key_env")})
    env["TEKTON_LLM_BACKEND"] = "auto"
    # Whether the codex / claude commands are installed is this machine's business,
    # checked when a run is planned, not a property of the profile.
    env["TEKTON_CODEX_BIN"] = env["TEKTON_CLAUDE_BIN"] = sys.executable
    env["PATH"] = os.environ.get("PATH", "")
    try:
        router_build(routes=routes, env=env).resolve(model)
    except NoRouteError as err:
        raise FieldError(field, f"{model}: {err}") from None


def _check_stage_models(value: Any, routes: list[dict[str, Any]]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError("stage_models", 'stage_models must be {"default": ..., "stages": {...}}')
    unknown = set(value) - {"default", "stages"}
    if unknown:
        raise FieldError(
            "stage_models", f"stage_models has unknown keys: {', '.join(sorted(unknown))}"
        )
    default = value.get("default")
    if not default:
        raise FieldError("stage_models.default", "stage_models.default (a model id) is required")
    _route_check(default, "stage_models.default", routes)
    stages = value.get("stages") or {}
    if not isinstance(stages, dict):
        raise FieldError(
            "stage_models.stages", "stage_models.stages must map stage -> {role: model}"
        )
    cleaned: dict[str, dict[str, str]] = {}
    for stage, roles in stages.items():
        if stage not in STAGE_NAMES:
            raise FieldError(
                "stage_models.stages",
                f"unknown stage {stage!r} in stage_models; stages are: {', '.join(STAGE_NAMES)}",
            )
        if not isinstance(roles, dict):
            raise FieldError(
                f"stage_models.{stage}", f"stage_models.{stage} must map role -> model"
            )
        for role, model in roles.items():
            if role not in ROLES:
                raise FieldError(
                    f"stage_models.{stage}",
                    f"unknown role {role!r} for stage {stage}; roles are: {', '.join(ROLES)}",
                )
            _route_check(model, f"stage_models.{stage}.{role}", routes)
        if roles:
            cleaned[stage] = dict(roles)
    return {"default": default, "stages": cleaned}


def _unit_interval(data: Mapping[str, Any], field: str) -> float:
    value = data[field]
    if isinstance(value, bool):
        raise FieldError(field, f"{field} must be a number in (0, 1], got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldError(field, f"{field} must be a number in (0, 1], got {value!r}") from None
    if not 0 < number <= 1:
        raise FieldError(field, f"{field} must be in (0, 1], got {number:g}")
    return number


def _check_stage_list(value: Any, field: str) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = [s.strip() for s in value.split(",") if s.strip()]
    if not isinstance(value, list | tuple):
        raise FieldError(field, f"{field} must be a list of stage names")
    cleaned: list[str] = []
    for stage in value:
        if stage not in STAGE_NAMES:
            raise FieldError(
                field, f"unknown stage {stage!r} in {field}; stages are: {', '.join(STAGE_NAMES)}"
            )
        if stage not in cleaned:
            cleaned.append(stage)
    # Keep run order so frozen configs compare equal however they were typed.
    return sorted(cleaned, key=STAGE_NAMES.index)


def profile_validate(data: Mapping[str, Any]) -> dict[str, Any]:
    """Check profile values and return them cleaned (only the keys given are checked).

    Known stages and roles only; model ids `vendor/model` served by some route; rounds
    0..5; quorum and threshold in (0, 1]; budgets >= 0; consensus-free stages known;
    cache_stagger true or false.
    Raises FieldError naming the first wrong field. Writes nothing.
    """
    unknown = set(data) - set(PROFILE_FIELDS)
    if unknown:
        raise FieldError(
            sorted(unknown)[0], f"unknown profile fields: {', '.join(sorted(unknown))}"
        )
    out: dict[str, Any] = {}
    if "name" in data:
        name = data["name"]
        if not isinstance(name, str) or not name.strip():
            raise FieldError("name", "name is required")
        name = name.strip()
        if len(name) > 100 or not _SLUG.match(name):
            raise FieldError(
                "name", f"name must be letters, digits, '-' or '_' (at most 100), got {name!r}"
            )
        out["name"] = name
    if "description" in data:
        description = data["description"] or ""
        if not isinstance(description, str):
            raise FieldError("description", "description must be text")
        out["description"] = description
    routes = _check_routes(data.get("routes"))
    if "routes" in data:
        out["routes"] = routes
    if "stage_models" in data:
        out["stage_models"] = _check_stage_models(data["stage_models"], routes)
    if "rounds" in data:
        rounds = data["rounds"]
        if isinstance(rounds, bool) or not isinstance(rounds, int | str):
            raise FieldError("rounds", f"rounds must be a whole number 0..{MAX_ROUNDS}")
        try:
            rounds = int(rounds)
        except ValueError:
            raise FieldError("rounds", f"rounds must be a whole number 0..{MAX_ROUNDS}") from None
        if not 0 <= rounds <= MAX_ROUNDS:
            raise FieldError("rounds", f"rounds must be between 0 and {MAX_ROUNDS}, got {rounds}")
        out["rounds"] = rounds
    for field in ("quorum", "threshold"):
        if field in data:
            out[field] = _unit_interval(data, field)
    if "consensus_free" in data:
        out["consensus_free"] = _check_stage_list(data["consensus_free"], "consensus_free")
    if "budget_tokens" in data:
        tokens = data["budget_tokens"]
        try:
            tokens = int(tokens if tokens not in (None, "") else 0)
        except (TypeError, ValueError):
            raise FieldError("budget_tokens", "budget_tokens must be a whole number >= 0") from None
        if tokens < 0:
            raise FieldError(
                "budget_tokens", f"budget_tokens must be >= 0 (0 = no limit), got {tokens}"
            )
        out["budget_tokens"] = tokens
    if "budget_cost_usd" in data:
        cost = data["budget_cost_usd"]
        try:
            cost = Decimal(str(cost if cost not in (None, "") else 0))
        except InvalidOperation:
            raise FieldError("budget_cost_usd", "budget_cost_usd must be a number >= 0") from None
        if not cost.is_finite() or cost < 0:
            raise FieldError(
                "budget_cost_usd", f"budget_cost_usd must be >= 0 (0 = no limit), got {cost}"
            )
        out["budget_cost_usd"] = cost.quantize(Decimal("0.01"))
    if "artifact_root" in data:
        root = data["artifact_root"] or ""
        if not isinstance(root, str):
            raise FieldError("artifact_root", "artifact_root must be a path")
        out["artifact_root"] = root.strip()
    if "tool_grants" in data:
        out["tool_grants"] = _check_tool_grants(data["tool_grants"])
    for field, top in (("max_tool_calls", MAX_TOOL_CALLS), ("max_test_runs", MAX_TEST_RUNS)):
        if field in data:
            value = data[field]
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise FieldError(field, f"{field} must be a whole number 0..{top}")
            try:
                value = int(value)
            except ValueError:
                raise FieldError(field, f"{field} must be a whole number 0..{top}") from None
            if not 0 <= value <= top:
                raise FieldError(field, f"{field} must be between 0 and {top}, got {value}")
            out[field] = value
    if "sandbox_limits" in data:
        out["sandbox_limits"] = _check_sandbox_limits(data["sandbox_limits"])
    if "prices" in data:
        out["prices"] = _check_prices(data["prices"])
    if "cache_stagger" in data:
        out["cache_stagger"] = _check_bool(data["cache_stagger"], "cache_stagger")
    return out


def _check_bool(value: Any, field: str) -> bool:
    # JSON and the admin give booleans; a form or a query string may give their words.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise FieldError(field, f"{field} must be true or false, got {value!r}")


def _check_tool_grants(grants: Any) -> dict[str, Any]:
    """{} (the defaults) or {stage: {role: [tool, ...]}} naming known stages, roles and
    tools; stored as given, resolved against the defaults when a run freezes it."""
    from swarm.tools import tool_grants_check

    if grants in (None, "", {}):
        return {}
    if not isinstance(grants, dict):
        raise FieldError("tool_grants", "tool_grants must be an object {stage: {role: [tool]}}")
    try:
        tool_grants_check(grants)
    except ValueError as exc:
        raise FieldError("tool_grants", str(exc)) from None
    return grants


def _check_prices(prices: Any) -> dict[str, dict[str, float]]:
    """{model id: {"input": $/M, "output": $/M}}, both numbers >= 0."""
    if prices in (None, ""):
        return {}
    if not isinstance(prices, dict):
        raise FieldError(
            "prices", 'prices must be an object: {"vendor/model": {"input": 3.0, "output": 15.0}}'
        )
    out: dict[str, dict[str, float]] = {}
    for model_id, price in prices.items():
        if not isinstance(model_id, str) or not _MODEL_ID.match(model_id):
            raise FieldError("prices", f"prices: model id must be vendor/model, got {model_id!r}")
        if not isinstance(price, dict) or set(price) != {"input", "output"}:
            raise FieldError(
                f"prices.{model_id}",
                f'the price of {model_id} must be {{"input": $/M tokens, "output": $/M tokens}}',
            )
        cleaned = {}
        for side in ("input", "output"):
            value = price[side]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise FieldError(
                    f"prices.{model_id}.{side}",
                    f"the {side} price of {model_id} must be a number >= 0 ($ per million tokens)",
                )
            cleaned[side] = float(value)
        out[model_id] = cleaned
    return out


def prices_resolved(profile: Profile) -> dict[str, list[float]]:
    """The profile's prices as a run freezes them: {model id: [input, output]}."""
    return {m: [p["input"], p["output"]] for m, p in (profile.prices or {}).items()}


def _check_sandbox_limits(limits: Any) -> dict[str, Any]:
    if limits in (None, "", {}):
        return {}
    if not isinstance(limits, dict):
        raise FieldError("sandbox_limits", "sandbox_limits must be an object")
    unknown = sorted(set(limits) - set(SANDBOX_LIMIT_FIELDS))
    if unknown:
        raise FieldError(
            f"sandbox_limits.{unknown[0]}",
            f"unknown sandbox limit {unknown[0]!r}; limits are: {', '.join(SANDBOX_LIMIT_FIELDS)}",
        )
    out: dict[str, Any] = {}
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise FieldError(f"sandbox_limits.{name}", f"{name} must be a positive number")
        out[name] = int(value) if name in ("processes", "memory_mb") else float(value)
    return out


def sandbox_limits_resolve(limits: Mapping[str, Any] | None) -> dict[str, Any]:
    """A profile's sandbox limits over the defaults, as a run freezes them."""
    from swarm.sandbox import SandboxLimits

    defaults = SandboxLimits()
    return {
        name: (limits or {}).get(name, getattr(defaults, name)) for name in SANDBOX_LIMIT_FIELDS
    }


# --- reads and writes ---------------------------------------------------------------------


def profile_get(*, name: str | None = None) -> Profile:
    """The profile called `name` (None: the default "diamond-v5"). Raises FieldError."""
    wanted = name or DEFAULT_PROFILE_NAME
    profile = Profile.objects.filter(name=wanted).first()
    if profile is None:
        names = list(Profile.objects.values_list("name", flat=True))
        raise FieldError(
            "profile", f"unknown profile {wanted!r}; profiles: {', '.join(names) or '(none)'}"
        )
    return profile


@transaction.atomic
def profile_create(*, data: Mapping[str, Any]) -> Profile:
    """Create a profile from `data` (name and stage_models.default required; the other
    fields take the model defaults). Raises FieldError; writes nothing on error."""
    cleaned = profile_validate(data)
    if "name" not in cleaned:
        raise FieldError("name", "name is required")
    if "stage_models" not in cleaned:
        raise FieldError("stage_models.default", "stage_models.default (a model id) is required")
    if Profile.objects.filter(name=cleaned["name"]).exists():
        raise FieldError("name", f"a profile named {cleaned['name']!r} already exists")
    try:
        with transaction.atomic():
            return Profile.objects.create(**cleaned)
    except IntegrityError:  # a concurrent create with the same name
        raise FieldError("name", f"a profile named {cleaned['name']!r} already exists") from None


@transaction.atomic
def profile_update(*, profile: Profile, data: Mapping[str, Any]) -> Profile:
    """Change the fields given in `data`. The default profile keeps its name. Past runs keep
    the configuration frozen into them. Raises FieldError; writes nothing on error."""
    cleaned = profile_validate(data)
    if "stage_models" not in cleaned and "routes" in cleaned:
        # New routes must still serve the models already in the profile.
        profile_validate({"stage_models": profile.stage_models, "routes": cleaned["routes"]})
    if "routes" not in cleaned and "stage_models" in cleaned and profile.routes:
        cleaned["stage_models"] = profile_validate(
            {"stage_models": data["stage_models"], "routes": profile.routes}
        )["stage_models"]
    new_name = cleaned.get("name")
    if new_name and new_name != profile.name:
        if profile.is_default:
            raise FieldError(
                "name", f"the default profile {DEFAULT_PROFILE_NAME!r} cannot be renamed"
            )
        if Profile.objects.filter(name=new_name).exclude(pk=profile.pk).exists():
            raise FieldError("name", f"a profile named {new_name!r} already exists")
    for field, value in cleaned.items():
        setattr(profile, field, value)
    profile.save()
    return profile


@transaction.atomic
def profile_delete(*, profile: Profile) -> None:
    """Delete a profile. The default profile cannot be deleted (FieldError). Runs keep
    their frozen configuration, so deleting a profile never changes a past run."""
    if profile.is_default:
        raise FieldError(
            "profile", f"the default profile {DEFAULT_PROFILE_NAME!r} cannot be deleted"
        )
    profile.delete()


@transaction.atomic
def profile_copy(*, profile: Profile, name: str) -> Profile:
    """A new profile called `name` with every setting of `profile`. Raises FieldError."""
    data = {field: getattr(profile, field) for field in PROFILE_FIELDS if field != "name"}
    data["name"] = name
    data["description"] = profile.description or f"copy of {profile.name}"
    return profile_create(data=data)


def profile_models(profile: Profile, stage: str, model: str | None = None) -> dict[str, str]:
    """role -> model id for one stage: `model` everywhere when given, else the stage's
    entries falling back to the profile default."""
    if model:
        return {role: model for role in ROLES}
    stage_models = profile.stage_models or {}
    default = stage_models.get("default")
    per_stage = (stage_models.get("stages") or {}).get(stage) or {}
    return {role: per_stage.get(role) or default for role in ROLES}


def profile_unservable(
    profile: Profile, env: Mapping[str, str] | None = None
) -> list[tuple[str, str, str, str]]:
    """(stage, role, model, why) for every role of `profile` no backend can serve with
    the keys and tools of `env` (default: this process's environment). Writes nothing."""
    from swarm.providers.base import NoRouteError
    from swarm.providers.router import router_build

    env = os.environ if env is None else env
    try:
        router = router_build(routes=list(profile.routes or []), env=env)
    except NoRouteError as err:
        return [("*", "*", "*", str(err))]
    problems = []
    for stage in STAGE_NAMES:
        for role, model_id in profile_models(profile, stage).items():
            try:
                router.resolve(model_id or "")
            except NoRouteError as err:
                problems.append((stage, role, model_id or "(none)", str(err)))
    return problems


def _artifact_root(profile: Profile) -> str:
    if not profile.artifact_root:
        return str(Path(settings.TEKTON_ARTIFACT_ROOT).resolve())
    root = Path(profile.artifact_root).expanduser()
    if not root.is_absolute():
        root = Path(settings.TEKTON_DATA_DIR) / root
    return str(root.resolve())


def profile_resolve(
    *,
    profile: Profile,
    stages: list[str],
    model: str | None = None,
    consensus_free: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    record_path: str | None = None,
    replay_path: str | None = None,
    test_command: str | None = None,
) -> dict[str, Any]:
    """Freeze `profile` plus a run's choices into the JSON-ready `Run.config`.

    `model` puts one model in every role of every stage; `consensus_free` adds stages to
    the profile's own. Every model must have a route whose key variable is set in `env`
    (default: the process environment); the backend each resolves to is recorded under
    "backends". Raises FieldError("consensus_free" | "model" | "llm_backend", ...).
    With a cost budget, every model not answered offline (or replayed) needs a price,
    the table's or the profile's: else FieldError("budget_cost_usd") naming them.
    Writes nothing.
    """
    env = os.environ if env is None else env
    for stage in stages:
        if stage not in STAGE_NAMES:
            raise FieldError(
                "stages", f"unknown stage {stage!r}; stages are: {', '.join(STAGE_NAMES)}"
            )
    extra_free = _check_stage_list(list(consensus_free or []), "consensus_free")
    free = _check_stage_list([*(profile.consensus_free or []), *extra_free], "consensus_free")
    if model is not None and (not isinstance(model, str) or not _MODEL_ID.match(model)):
        raise FieldError("model", f"model id must be vendor/model, got {model!r}")
    llm_backend = (env.get("TEKTON_LLM_BACKEND") or "auto").strip()
    if llm_backend not in LLM_BACKEND_MODES:
        raise FieldError(
            "llm_backend",
            f"TEKTON_LLM_BACKEND must be one of {', '.join(LLM_BACKEND_MODES)}, got {llm_backend!r}",
        )
    replay_path = replay_path or env.get("TEKTON_REPLAY_PATH") or None
    if llm_backend == "replay" and not replay_path:
        raise FieldError(
            "llm_backend", "TEKTON_LLM_BACKEND=replay needs TEKTON_REPLAY_PATH (a cassette)"
        )

    from swarm.providers.base import NoRouteError
    from swarm.providers.router import router_build

    routes = list(profile.routes or [])
    try:
        router = router_build(
            routes=routes, env=env, backend_override=llm_backend, replay_path=replay_path
        )
    except NoRouteError as err:
        raise FieldError("llm_backend", str(err)) from None
    models = {stage: profile_models(profile, stage, model) for stage in stages}
    backends: dict[str, str] = {}
    for stage_models in models.values():
        for model_id in stage_models.values():
            if model_id in backends:
                continue
            if not model_id:
                raise FieldError("model", f"profile {profile.name!r} has no default model")
            try:
                backends[model_id] = router.resolve(model_id).backend
            except NoRouteError as err:
                raise FieldError("model", str(err)) from None
    prices = prices_resolved(profile)
    if profile.budget_cost_usd:
        from swarm.providers.pricing import unpriced_models

        unpriced = unpriced_models(backends, {m: tuple(p) for m, p in prices.items()})
        if unpriced:
            raise FieldError("budget_cost_usd", unpriced_refusal(profile.name, unpriced))
    return {
        "profile": profile.name,
        "stages": list(stages),
        "models": models,
        "backends": backends,
        "rounds": int(profile.rounds),
        "quorum": round(float(profile.quorum), 4),
        "threshold": round(float(profile.threshold), 4),
        "consensus_free": free,
        "budget_tokens": int(profile.budget_tokens or 0),
        "budget_cost_usd": float(profile.budget_cost_usd or 0),
        "artifact_root": _artifact_root(profile),
        "routes": routes,
        "llm_backend": llm_backend,
        "record_path": str(Path(record_path).resolve()) if record_path else None,
        "replay_path": str(Path(replay_path).resolve()) if replay_path else None,
        "tool_grants": _tool_grants_resolved(profile),
        "max_tool_calls": int(profile.max_tool_calls),
        "max_test_runs": int(profile.max_test_runs),
        "sandbox_limits": sandbox_limits_resolve(profile.sandbox_limits),
        "test_command": test_command,
        "prices": prices,
        "cache_stagger": bool(profile.cache_stagger),
    }


def unpriced_refusal(profile_name: str, models: list[str]) -> str:
    return (
        f"a cost budget needs a price for every model, and {', '.join(models)} "
        f"{'has' if len(models) == 1 else 'have'} none: give profile {profile_name!r} "
        'prices for them ({"vendor/model": {"input": $/M, "output": $/M}}), or run '
        "without a cost budget"
    )


def _tool_grants_resolved(profile: Profile) -> dict[str, dict[str, list[str]]]:
    from swarm.tools import tool_grants_check

    return tool_grants_check(profile.tool_grants or None)
