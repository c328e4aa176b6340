#!/usr/bin/env bash
# Set up, check the layers, then run the unit and integration tests against a real Kafka broker
# and PostgreSQL.
#
# The layers (schemas → floor → stages → roof, pyproject.toml [tool.importlinter]) are checked
# by import-linter first: an import that breaks one fails here. The integration fixtures use
# $KAFKA_BOOTSTRAP_SERVERS and $DATABASE_URL when both are set, testcontainers with
# SPEECHSTREAM_TEST_INFRASTRUCTURE=testcontainers, and otherwise start their own local stack.
# Extra arguments go to pytest.
# Exits non-zero on any failure, and when no test was collected.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lint-imports
exec .venv/bin/pytest tests "$@"
