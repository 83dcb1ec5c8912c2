#!/usr/bin/env bash
# Run Tekton's full test suite. Integration tests use PostgreSQL and Redis on 127.0.0.1
# (TEKTON_TEST_DATABASE_URL, TEKTON_TEST_REDIS_URL); they skip with the reason when those
# are unreachable, unless TEKTON_REQUIRE_SERVICES=1 (CI), where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_uv.sh

uv sync --frozen --quiet
exec uv run pytest "$@"
