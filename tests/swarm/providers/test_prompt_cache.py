"""The fake servers' prompt caches, through the official SDKs and the router: a prefix is
read only after the call that wrote it finished, never below the minimum length, and
cached reads and writes are priced at the vendor's rates."""

import asyncio
import dataclasses

import pytest

from swarm.providers import router_build
from swarm.providers.base import CompletionRequest, Message
from swarm.providers.capabilities import CapabilityStore
from swarm.providers.pricing import price_for
from tests.fakes.llm_server import slow
from tests.fakes.prompt_cache import CHARS_PER_TOKEN, CacheRequestError, PromptCache

SONNET = "anthropic/claude-sonnet-4.5"  # caches from 1,024 tokens
HAIKU = "anthropic/claude-haiku-4.5"  # caches from 4,096 tokens
GPT = "openai/gpt-4o"


def stable(tokens: int) -> str:
    return "The stage's shared context. " * (tokens * CHARS_PER_TOKEN // 28 + 1)


def request(model: str, *, shared_tokens: int = 1500, turn: str = "skeptic, round 1"):
    messages = (
        Message("system", "You take part in a stage of a Diamond v5 run."),
        Message("user", stable(shared_tokens)),
        Message("user", f"You are the {turn}."),
    )
    return CompletionRequest(model=model, messages=messages, max_tokens=64, cache_prefix=2)


@pytest.fixture
async def router(fake_llm):
    fake_llm.cache = PromptCache()
    env = {
        "PATH": "",
        "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
        "ANTHROPIC_BASE_URL": fake_llm.anthropic_base_url,
        "OPENAI_API_KEY": "k",
        "OPENAI_BASE_URL": fake_llm.openai_base_url,
    }
    built = router_build(env=env, capability_store=CapabilityStore())
    yield built
    await built.aclose()


@pytest.mark.parametrize("streamed", [False, True])
async def test_anthropic_writes_then_reads_the_prefix_and_prices_both(router, streamed):
    def on(model_request):
        if streamed:
            return dataclasses.replace(model_request, on_delta=lambda d: None)
        return model_request

    first = await router.complete(on(request(SONNET, turn="proponent, round 0")))
    second = await router.complete(on(request(SONNET, turn="skeptic, round 1")))
    assert first.usage.cache_write_tokens > 1024 and first.usage.cached_input_tokens == 0
    # The second call reads exactly what the first wrote; only its own turn is full price.
    assert second.usage.cached_input_tokens == first.usage.cache_write_tokens
    assert second.usage.cache_write_tokens == 0
    assert 0 < second.usage.uncached_input_tokens < 50
    inp, out = price_for(SONNET)
    for done in (first, second):
        u = done.usage
        expected = (
            u.uncached_input_tokens * inp
            + u.cached_input_tokens * inp * 0.1
            + u.cache_write_tokens * inp * 1.25
            + u.output_tokens * out
        ) / 1_000_000
        assert done.cost_usd == pytest.approx(expected)
    assert second.cost_usd < first.cost_usd / 5


async def test_parallel_opening_calls_all_write_and_only_a_later_call_reads(router, fake_llm):
    # The three debaters of an opening round start together: none has finished when the
    # others look, so all three miss (and pay the write premium); the next round hits.
    fake_llm.script(*(slow(0.3) for _ in range(3)))
    opening = await asyncio.gather(
        *(router.complete(request(SONNET, turn=f"{role}, round 0")) for role in "abc")
    )
    assert [c.usage.cached_input_tokens for c in opening] == [0, 0, 0]
    assert len({c.usage.cache_write_tokens for c in opening}) == 1
    assert opening[0].usage.cache_write_tokens > 1024
    later = await router.complete(request(SONNET, turn="a, round 1"))
    assert later.usage.cached_input_tokens == opening[0].usage.cache_write_tokens


async def test_below_the_models_minimum_nothing_is_cached(router):
    # ~2,000 tokens: enough for Sonnet 4.5 (1,024), too short for Haiku 4.5 (4,096).
    for _ in range(2):
        haiku = await router.complete(request(HAIKU, shared_tokens=2000))
    assert haiku.usage.cached_input_tokens == haiku.usage.cache_write_tokens == 0
    assert haiku.usage.uncached_input_tokens == haiku.usage.input_tokens > 2000
    for _ in range(2):
        sonnet = await router.complete(request(SONNET, shared_tokens=2000))
    assert sonnet.usage.cached_input_tokens > 2000


async def test_a_request_without_breakpoints_is_not_cached_by_anthropic(router, fake_llm):
    for _ in range(2):
        done = await router.complete(dataclasses.replace(request(SONNET), cache_prefix=0))
    assert done.usage.cached_input_tokens == 0 and done.usage.cache_write_tokens == 0
    assert "cache_control" not in str(fake_llm.requests[-1].body)


async def test_openai_caches_long_prompts_in_128_token_steps(router, fake_llm):
    first = await router.complete(request(GPT, shared_tokens=1500))
    second = await router.complete(request(GPT, shared_tokens=1500, turn="pragmatist"))
    assert first.usage.cached_input_tokens == 0 and first.usage.cache_write_tokens == 0
    cached = second.usage.cached_input_tokens
    assert cached >= 1024 and (cached - 1024) % 128 == 0
    # What differs (the last message) is never read from the cache.
    assert second.usage.input_tokens - 128 < cached < second.usage.input_tokens
    inp, out = price_for(GPT)
    assert second.cost_usd == pytest.approx(
        ((second.usage.input_tokens - cached) * inp + cached * 1.25 + 7 * out) / 1_000_000
    )
    # Under 1,024 tokens nothing is cached, however often it is sent.
    for _ in range(2):
        short = await router.complete(request(GPT, shared_tokens=600))
    assert short.usage.input_tokens < 1024 and short.usage.cached_input_tokens == 0


async def test_a_disabled_cache_counts_the_same_tokens_and_never_hits(router, fake_llm):
    cached = [await router.complete(request(SONNET)) for _ in range(2)]
    fake_llm.cache = PromptCache(enabled=False)
    plain = [await router.complete(request(SONNET)) for _ in range(2)]
    assert [c.usage.input_tokens for c in plain] == [c.usage.input_tokens for c in cached]
    assert all(c.usage.uncached_input_tokens == c.usage.input_tokens for c in plain)
    assert sum(c.cost_usd for c in cached) < sum(c.cost_usd for c in plain)


def test_an_entry_expires_five_minutes_after_its_last_use():
    now = [0.0]
    cache = PromptCache(clock=lambda: now[0])
    body = {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": stable(1200), "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}],
    }
    cache.anthropic(body).commit()
    now[0] = 299.0
    assert cache.anthropic(body).cached_tokens > 1024  # read: refreshed until 599
    now[0] = 598.0
    assert cache.anthropic(body).cached_tokens > 1024
    now[0] = 1000.0
    use = cache.anthropic(body)
    assert use.cached_tokens == 0 and use.cache_write_tokens > 1024


def _body(*texts: str, marked: tuple[int, ...]) -> dict:
    blocks = [
        {
            "type": "text",
            "text": t,
            **({"cache_control": {"type": "ephemeral"}} if i in marked else {}),
        }
        for i, t in enumerate(texts)
    ]
    return {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": blocks}]}


def test_anthropic_reads_what_an_earlier_request_wrote_up_to_20_blocks_back():
    cache = PromptCache()
    base, round_one = stable(1500), "round 1 transcript. " * 200
    first = cache.anthropic(_body(base, round_one, marked=(1,)))
    first.commit()
    # A later request marks only its own end; the lookup walks back to what was written.
    near = cache.anthropic(_body(base, round_one, *["more"] * 20, marked=(21,)))
    assert near.cached_tokens == first.cache_write_tokens > 1024
    far = cache.anthropic(_body(base, round_one, *["more"] * 21, marked=(22,)))
    assert far.cached_tokens == 0  # 21 blocks back: out of the window
    # Only breakpoints write: the unmarked block end in between was never stored.
    between = cache.anthropic(_body(base, marked=(0,)))
    assert between.cached_tokens == 0


def test_anthropic_refuses_more_than_4_breakpoints():
    with pytest.raises(CacheRequestError, match="maximum of 4"):
        PromptCache().anthropic(_body(*["x"] * 5, marked=(0, 1, 2, 3, 4)))


async def test_anthropic_a_stage_reads_the_run_part_the_stage_before_wrote(router, facts):
    from swarm import prompts
    from tests.swarm.conftest import stage_input, valid_artifacts

    artifacts = valid_artifacts()
    goal = "Document the add function. " + stable(1200)  # the run part alone is cacheable

    def opening(stage: str, prior: dict) -> CompletionRequest:
        inp = stage_input(facts, stage, goal=goal, prior_artifacts=prior)
        messages = prompts.debater_messages(inp, role="proponent", round=0, rounds=1, transcript=[])
        return CompletionRequest(
            model=SONNET,
            messages=tuple(messages),
            max_tokens=64,
            cache_prefix=prompts.SHARED_MESSAGES,
            cache_shared=prompts.RUN_MESSAGES,
        )

    first = await router.complete(opening("research", {"plan": artifacts["plan"]}))
    both = {"plan": artifacts["plan"], "research": artifacts["research"]}
    second = await router.complete(opening("plan_update", both))
    assert first.usage.cached_input_tokens == 0
    # The next stage's run part is this one's plus the research artifact: it reads what
    # the research stage wrote at its run part's end, one block before its own.
    assert second.usage.cached_input_tokens > 1200
    assert second.usage.cache_write_tokens < first.usage.cache_write_tokens


def test_anthropic_a_changed_tool_choice_invalidates_the_messages_not_tools_or_system():
    # Anthropic's invalidation table: "Changes to tool_choice parameter only affect
    # message blocks"; the tools and the system prompt stay cached.
    cache = PromptCache()
    tools = [
        {"name": f"tool_{i}", "description": stable(300), "input_schema": {"type": "object"}}
        for i in range(4)
    ]
    tools[-1]["cache_control"] = {"type": "ephemeral"}

    def body(choice: dict) -> dict:
        return {
            "model": "claude-sonnet-4-5",
            "tools": tools,
            "tool_choice": choice,
            "system": [{"type": "text", "text": "The run's system text."}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "text",
                            "text": stable(1500),
                            "cache_control": {"type": "ephemeral"},
                        }
                    ],
                }
            ],
        }

    first = cache.anthropic(body({"type": "any"}))
    first.commit()
    same = cache.anthropic(body({"type": "any"}))
    forced = cache.anthropic(body({"type": "tool", "name": "tool_0"}))
    assert same.cached_tokens == first.cache_write_tokens > 2500
    # Only the tools' prefix is read (about 1,200 tokens); the message block is written anew.
    assert 1024 <= forced.cached_tokens < 1500
    assert forced.cache_write_tokens == first.cache_write_tokens - forced.cached_tokens
