"""The OpenAPI document itself is valid (a generated client reads it before any request),
including the per-event description of the SSE stream."""

from __future__ import annotations

from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema


def test_the_openapi_document_validates_against_its_specification():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert schema["openapi"] == "3.1.0"
    validate_schema(schema)  # raises on any violation, e.g. a keyword 3.0 does not know
    events = schema["paths"]["/api/runs/{run_id}/events"]["get"]["responses"]["200"]
    assert "oneOf" in events["content"]["text/event-stream"]["schema"]
    prompt = schema["paths"]["/api/prompts/{invocation_id}/events"]["get"]["responses"]["200"]
    assert "oneOf" in prompt["content"]["text/event-stream"]["schema"]
    assert "PromptEvent" in schema["components"]["schemas"]
