"""What a model server refused is kept in the database: another process (a new store)
sends the fallback mode from its first call, and the checks page says what was learned."""

from __future__ import annotations

import asyncio

import pytest

from config_profiles.capabilities import capability_refusal_record, capability_refusals_load
from config_profiles.models import LearnedCapability
from swarm.providers.capabilities import CapabilityStore
from swarm.providers.openai_backend import OpenAIBackend
from syschecks.services import checks_run
from tests.fakes.llm_server import FakeLlmServer, llama_cpp, ok
from tests.swarm.providers.conftest import PLAN_SCHEMA, make_request

pytestmark = pytest.mark.django_db(transaction=True)  # the store writes from its own thread


def _store() -> CapabilityStore:
    store = CapabilityStore()
    store.remember_with(on_refuse=capability_refusal_record, load=capability_refusals_load)
    return store


@pytest.fixture
def fake_llm():
    server = FakeLlmServer().start()
    yield server
    server.stop()


def test_a_refusal_learned_in_one_process_is_known_to_the_next_and_shown(fake_llm):
    async def call(store):
        backend = OpenAIBackend(
            env={}, key_env=None, base_url=fake_llm.openai_base_url, capabilities=store
        )
        try:
            return await backend.complete(make_request("smollm2", schema=PLAN_SCHEMA))
        finally:
            await backend.aclose()

    fake_llm.script(llama_cpp(), llama_cpp(then=ok({"goals": ["a"], "confidence": 0.5})))
    asyncio.run(call(_store()))  # inside an event loop, as in the engine
    row = LearnedCapability.objects.get()
    assert (row.backend, row.model, row.refused) == ("openai", "smollm2", ["json_schema"])
    assert "validation error" in row.detail

    fake_llm.script(llama_cpp(then=ok({"goals": ["a"], "confidence": 0.5})))
    asyncio.run(call(_store()))  # a new process: json_object from the first request
    assert fake_llm.requests[-1].body["response_format"]["type"] == "json_object"
    assert len(fake_llm.requests) == 3

    (result,) = checks_run(only=["provider.capabilities"])
    assert result.status == "ok"
    assert "smollm2 at http://127.0.0.1" in result.detail
    assert "refused json_schema; sends structured json_object" in result.detail


def test_nothing_learned_says_so():
    (result,) = checks_run(only=["provider.capabilities"])
    assert result.status == "ok" and "no server refused anything" in result.detail
