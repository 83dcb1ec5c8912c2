"""Routing rules, modes, and the Router's complete() through real SDKs at the fake server."""

import sys
import types

import pytest

from swarm.providers import NoRouteError, RouteInfo, router_build
from swarm.providers.base import Completion, Usage
from swarm.providers.pricing import cost_usd
from tests.fakes.llm_server import ok, status
from tests.swarm.providers.conftest import PLAN_SCHEMA, fake_tool, make_request

SECRET = "sk-ant-api03-THISISASECRETVALUE0123456789"
DEFAULT_MODELS = [
    "anthropic/claude-opus-4.1",
    "openai/gpt-4o",
    "perplexity/llama-3.3-sonar-large-128k-online",
    "x-ai/grok-2-mini",
    "openai/gpt-5-codex",
]


def no_cli_env(**values: str) -> dict[str, str]:
    # An empty PATH and missing binaries, so the machine's own tools never leak in.
    return {
        "PATH": "",
        "TEKTON_CODEX_BIN": "/nonexistent/codex",
        "TEKTON_CLAUDE_BIN": "/nonexistent/claude",
        **values,
    }


# --- modes ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", DEFAULT_MODELS)
def test_auto_without_any_key_sends_everything_offline(model):
    router = router_build(env=no_cli_env())
    assert router.mode == "auto"
    assert router.resolve(model) == RouteInfo("offline", model, None, None)
    assert router.describe(model) == f"{model} -> offline"


def test_offline_mode_wins_over_keys():
    router = router_build(env=no_cli_env(ANTHROPIC_API_KEY=SECRET), backend_override="offline")
    assert router.resolve("anthropic/claude-opus-4.1").backend == "offline"
    assert (
        router_build(env=no_cli_env(OPENAI_API_KEY="x", TEKTON_LLM_BACKEND="offline"))
        .resolve("openai/gpt-4o")
        .backend
        == "offline"
    )


def test_unknown_mode_is_rejected():
    with pytest.raises(
        NoRouteError, match="TEKTON_LLM_BACKEND must be one of auto, offline, replay"
    ):
        router_build(env={"TEKTON_LLM_BACKEND": "cloud"})


def test_replay_mode_needs_a_cassette(tmp_path):
    with pytest.raises(NoRouteError, match="cassette"):
        router_build(env={}, backend_override="replay")
    with pytest.raises(NoRouteError, match="not found"):
        router_build(env={}, backend_override="replay", replay_path=str(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize("model", ["gpt-4o", "", "anthropic/", "/claude"])
def test_model_id_must_be_vendor_slash_model(model):
    router = router_build(env=no_cli_env(ANTHROPIC_API_KEY=SECRET))
    with pytest.raises(NoRouteError, match="model id must be vendor/model"):
        router.resolve(model)


# --- auto mode with keys -------------------------------------------------------------


def test_anthropic_route_strips_prefix_and_names_its_key():
    router = router_build(env=no_cli_env(ANTHROPIC_API_KEY=SECRET))
    info = router.resolve("anthropic/claude-opus-4.1")
    assert info == RouteInfo("anthropic", "claude-opus-4-1", "ANTHROPIC_API_KEY", None)
    assert router.describe("anthropic/claude-opus-4.1").startswith(
        "anthropic/claude-opus-4.1 -> anthropic"
    )


def test_missing_key_names_the_variable_and_never_a_value():
    router = router_build(env=no_cli_env(ANTHROPIC_API_KEY=SECRET))
    with pytest.raises(NoRouteError) as caught:
        router.resolve("openai/gpt-4o")
    assert str(caught.value) == "model openai/gpt-4o needs env var OPENAI_API_KEY (not set)"
    assert SECRET not in router.describe("openai/gpt-4o")
    assert "OPENAI_API_KEY" in router.describe("openai/gpt-4o")


def test_openai_route_strips_prefix_and_takes_optional_base_url():
    router = router_build(
        env=no_cli_env(OPENAI_API_KEY="k", OPENAI_BASE_URL="http://127.0.0.1:11434/v1")
    )
    assert router.resolve("openai/gpt-4o") == RouteInfo(
        "openai", "gpt-4o", "OPENAI_API_KEY", "http://127.0.0.1:11434/v1"
    )
    assert (
        router_build(env=no_cli_env(OPENAI_API_KEY="k")).resolve("openai/gpt-4o").base_url is None
    )


def test_other_vendors_go_to_openrouter_with_the_full_id():
    router = router_build(env=no_cli_env(OPENROUTER_API_KEY="k"))
    info = router.resolve("x-ai/grok-2-mini")
    assert info == RouteInfo(
        "openai", "x-ai/grok-2-mini", "OPENROUTER_API_KEY", "https://openrouter.ai/api/v1"
    )
    # A vendor whose own key is missing is served by the gateway too.
    assert router.resolve("anthropic/claude-opus-4.1").upstream_model == "anthropic/claude-opus-4.1"
    assert router.resolve("openai/gpt-5-codex").base_url == "https://openrouter.ai/api/v1"


def test_portkey_and_aimlapi_gateways():
    portkey = router_build(
        env=no_cli_env(PORTKEY_API_KEY="k", PORTKEY_BASE_URL="https://pk.internal/v1")
    )
    info = portkey.resolve("perplexity/llama-3.3-sonar-large-128k-online")
    assert (info.key_env, info.base_url, info.key_header) == (
        "PORTKEY_API_KEY",
        "https://pk.internal/v1",
        "x-portkey-api-key",
    )
    assert (
        router_build(env=no_cli_env(PORTKEY_API_KEY="k")).resolve("x-ai/grok-2-mini").base_url
        == "https://api.portkey.ai/v1"
    )
    aiml = router_build(env=no_cli_env(AIMLAPI_API_KEY="k")).resolve("x-ai/grok-2-mini")
    assert (aiml.key_env, aiml.base_url) == ("AIMLAPI_API_KEY", "https://api.aimlapi.com/v1")


def test_other_vendor_without_gateway_lists_the_gateway_variables():
    router = router_build(env=no_cli_env(ANTHROPIC_API_KEY=SECRET))
    with pytest.raises(NoRouteError) as caught:
        router.resolve("x-ai/grok-2-mini")
    for name in ("OPENROUTER_API_KEY", "PORTKEY_API_KEY", "AIMLAPI_API_KEY"):
        assert name in str(caught.value)
    assert SECRET not in str(caught.value)


def test_codex_models_go_to_the_codex_cli(tmp_path):
    tool = fake_tool(tmp_path, "codex", "print('')\n")
    router = router_build(env=no_cli_env(OPENAI_API_KEY="k", TEKTON_CODEX_BIN=str(tool)))
    assert router.resolve("openai/gpt-5-codex") == RouteInfo("codex-cli", "gpt-5-codex", None, None)
    assert router.resolve("codex/o4-mini").backend == "codex-cli"
    assert router.resolve("openai/gpt-4o").backend == "openai"


def test_missing_codex_binary_is_a_no_route_naming_the_variable():
    router = router_build(env=no_cli_env(OPENAI_API_KEY="k"))
    with pytest.raises(NoRouteError, match="TEKTON_CODEX_BIN"):
        router.resolve("openai/gpt-5-codex")


def test_cli_models_named_explicitly_keep_their_route_without_keys(tmp_path):
    tool = fake_tool(tmp_path, "claude", "print('')\n")
    router = router_build(env=no_cli_env(TEKTON_CLAUDE_BIN=str(tool)))
    assert router.resolve("claude-cli/sonnet") == RouteInfo("claude-cli", "sonnet", None, None)
    with pytest.raises(NoRouteError, match="codex"):
        router.resolve("codex/gpt-5-codex")  # asked for by name: an error, never offline


# --- profile routes ------------------------------------------------------------------


def test_profile_routes_are_tried_first():
    routes = [
        {
            "match": "anthropic/*",
            "backend": "openai",
            "base_url": "https://gw.example/v1",
            "key_env": "GW_KEY",
        }
    ]
    router = router_build(
        routes=routes, env=no_cli_env(ANTHROPIC_API_KEY=SECRET, OPENAI_API_KEY="o", GW_KEY="g")
    )
    assert router.resolve("anthropic/claude-opus-4.1") == RouteInfo(
        "openai", "anthropic/claude-opus-4.1", "GW_KEY", "https://gw.example/v1"
    )
    assert router.resolve("openai/gpt-4o") == RouteInfo("openai", "gpt-4o", "OPENAI_API_KEY", None)


def test_a_key_named_by_a_profile_route_counts_as_a_key():
    routes = [
        {
            "match": "x-ai/*",
            "backend": "openai",
            "base_url": "https://gw.example/v1",
            "key_env": "GW_KEY",
        }
    ]
    assert (
        router_build(routes=routes, env=no_cli_env()).resolve("x-ai/grok-2-mini").backend
        == "offline"
    )
    router = router_build(routes=routes, env=no_cli_env(GW_KEY="g"))
    assert router.resolve("x-ai/grok-2-mini").key_env == "GW_KEY"
    with pytest.raises(NoRouteError, match="ANTHROPIC_API_KEY"):
        router.resolve("anthropic/claude-opus-4.1")


def test_profile_route_with_missing_key_is_an_error_not_a_fallthrough():
    routes = [
        {
            "match": "x-ai/*",
            "backend": "openai",
            "base_url": "https://gw.example/v1",
            "key_env": "XAI_GATEWAY_KEY",
        }
    ]
    router = router_build(routes=routes, env=no_cli_env(OPENROUTER_API_KEY=SECRET))
    with pytest.raises(NoRouteError) as caught:
        router.resolve("x-ai/grok-2-mini")
    assert "XAI_GATEWAY_KEY" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_keyless_profile_route_serves_without_any_key():
    routes = [
        {
            "match": "ollama/*",
            "backend": "openai",
            "base_url": "http://127.0.0.1:11434/v1",
            "strip_prefix": True,
        }
    ]
    router = router_build(routes=routes, env=no_cli_env())
    assert router.resolve("ollama/llama3") == RouteInfo(
        "openai", "llama3", None, "http://127.0.0.1:11434/v1"
    )
    assert router.resolve("anthropic/claude-opus-4.1").backend == "offline"


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"match": "a/*", "backend": "carrier-pigeon"}, "unknown backend"),
        ({"match": "a/*", "backend": "openai", "keyenv": "X"}, "unknown field"),
        ({"backend": "openai"}, "'match' must be a glob"),
        (
            {"match": "a/*", "backend": "openai", "base_url": "ftp://x"},
            "base_url must start with http",
        ),
        (
            {"match": "a/*", "backend": "openai", "strip_prefix": "yes"},
            "strip_prefix must be true or false",
        ),
    ],
)
def test_bad_profile_routes_are_rejected(route, message):
    with pytest.raises(NoRouteError, match=message):
        router_build(routes=[route], env={})


def test_a_key_pasted_into_key_env_is_refused_without_echoing_it():
    with pytest.raises(NoRouteError) as caught:
        router_build(routes=[{"match": "a/*", "backend": "openai", "key_env": SECRET}], env={})
    assert "must name an environment variable" in str(caught.value)
    assert SECRET not in str(caught.value)


# --- complete() ----------------------------------------------------------------------


async def test_complete_through_openai_strips_prefix_prices_and_retries(fake_llm, sleep):
    env = no_cli_env(
        OPENAI_API_KEY="sk-test-openai-0123456789abcdef", OPENAI_BASE_URL=fake_llm.openai_base_url
    )
    router = router_build(env=env, retry_options={"sleep": sleep, "base_delay": 0.01})
    fake_llm.script(
        status(429, retry_after=2),
        ok({"goals": ["x"], "confidence": 0.9}, input_tokens=1000, output_tokens=500),
    )
    result = await router.complete(make_request("openai/gpt-4o", schema=PLAN_SCHEMA))
    await router.aclose()
    assert result.model == "openai/gpt-4o"
    assert result.provider == "openai"
    assert result.parsed == {"goals": ["x"], "confidence": 0.9}
    assert result.attempts == 2
    assert sleep.delays[0] >= 2.0
    assert result.cost_usd == pytest.approx(cost_usd("openai/gpt-4o", 1000, 500))
    assert result.cost_usd > 0
    assert [r.body["model"] for r in fake_llm.requests] == ["gpt-4o", "gpt-4o"]


async def test_complete_through_anthropic_sends_the_key_and_anthropic_id(fake_llm):
    env = no_cli_env(ANTHROPIC_API_KEY=SECRET, ANTHROPIC_BASE_URL=fake_llm.anthropic_base_url)
    router = router_build(env=env)
    fake_llm.script(ok({"goals": ["y"], "confidence": 0.75}))
    result = await router.complete(make_request("anthropic/claude-opus-4.1", schema=PLAN_SCHEMA))
    await router.aclose()
    assert result.parsed == {"goals": ["y"], "confidence": 0.75}
    assert result.model == "anthropic/claude-opus-4.1"
    sent = fake_llm.requests[0]
    assert sent.body["model"] == "claude-opus-4-1"
    assert SECRET in (sent.headers.get("x-api-key") or sent.headers.get("authorization", ""))


async def test_complete_through_a_gateway_keeps_the_full_id(fake_llm):
    routes = [
        {
            "match": "x-ai/*",
            "backend": "openai",
            "base_url": fake_llm.openai_base_url,
            "key_env": "GW_KEY",
        }
    ]
    router = router_build(routes=routes, env=no_cli_env(GW_KEY="gw-secret-123456"))
    await router.complete(make_request("x-ai/grok-2-mini"))
    await router.aclose()
    assert fake_llm.requests[0].body["model"] == "x-ai/grok-2-mini"
    assert fake_llm.requests[0].headers["authorization"] == "Bearer gw-secret-123456"


async def test_backends_are_built_once_per_route(fake_llm):
    env = no_cli_env(OPENAI_API_KEY="k", OPENAI_BASE_URL=fake_llm.openai_base_url)
    router = router_build(env=env)
    first = router.provider_for(router.resolve("openai/gpt-4o"))
    assert router.provider_for(router.resolve("openai/gpt-4o-mini")) is first
    await router.complete(make_request("openai/gpt-4o"))
    assert router.provider_for(router.resolve("openai/gpt-4o")) is first
    await router.aclose()
    assert router.provider_for(router.resolve("openai/gpt-4o")) is not first
    await router.aclose()


async def test_offline_answers_come_from_the_offline_provider_unpriced(monkeypatch):
    made = []

    class FakeOffline:
        name = "offline"

        def __init__(self, *, latency_ms=None):
            made.append(latency_ms)

        async def complete(self, request):
            return Completion("{}", {}, Usage(400, 300), 0.0, 0.0, "offline", request.model)

    module = types.ModuleType("swarm.providers.offline")
    module.OfflineProvider = FakeOffline
    monkeypatch.setitem(sys.modules, "swarm.providers.offline", module)
    router = router_build(env=no_cli_env(TEKTON_OFFLINE_LATENCY_MS="25"))
    result = await router.complete(make_request("anthropic/claude-opus-4.1"))
    assert result.provider == "offline"
    assert result.cost_usd == 0.0
    assert result.model == "anthropic/claude-opus-4.1"
    assert made == [25.0]


async def test_record_then_replay_through_the_router(fake_llm, tmp_path):
    cassette = tmp_path / "run.jsonl"
    env = no_cli_env(OPENAI_API_KEY="k", OPENAI_BASE_URL=fake_llm.openai_base_url)
    recorder = router_build(env=env, record_path=str(cassette))
    fake_llm.script(ok({"goals": ["recorded"], "confidence": 0.8}), ok("plain"))
    request_a = make_request("openai/gpt-4o", prompt="a", schema=PLAN_SCHEMA)
    request_b = make_request("openai/gpt-4o", prompt="b")
    live = [await recorder.complete(request_a), await recorder.complete(request_b)]
    await recorder.aclose()
    assert len(fake_llm.requests) == 2

    replayer = router_build(env=env, backend_override="replay", replay_path=str(cassette))
    assert replayer.describe("openai/gpt-4o") == "openai/gpt-4o -> replay"
    replayed = [await replayer.complete(request_b), await replayer.complete(request_a)]
    assert len(fake_llm.requests) == 2  # nothing went to the network
    assert replayed[1].parsed == live[0].parsed
    assert replayed[0].text == live[1].text
    assert all(r.provider == "replay" and r.cost_usd == 0.0 for r in replayed)
