#!/usr/bin/env bash
# Set up what is missing, build the images, then run the container tests: the compose stack's
# smoke test (tests/containers) and the pipeline, sink and API integration tests on
# testcontainers, from the project's Kafka and PostgreSQL images.
#
# As root on a Debian machine it installs Debian's docker.io (the engine and a client that
# builds with BuildKit) and mmdebstrap, and starts dockerd when no engine answers. Extra
# arguments go to pytest. Exits non-zero on any failure, and when no test was collected.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if ! command -v dockerd > /dev/null || ! command -v mmdebstrap > /dev/null; then
  echo "setup: apt-get install docker.io mmdebstrap docker-compose"
  apt-get update -q > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io mmdebstrap docker-compose \
    > /dev/null
fi
if ! docker info > /dev/null 2>&1; then
  echo "setup: starting dockerd (log: build/dockerd.log)"
  mkdir -p build
  nohup dockerd > build/dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info > /dev/null 2>&1 && break; sleep 1; done
  docker info > /dev/null
fi

.venv/bin/speechstream dev images

export SPEECHSTREAM_TEST_CONTAINERS=1
export SPEECHSTREAM_TEST_INFRASTRUCTURE=testcontainers
export SPEECHSTREAM_TEST_KAFKA_IMAGE=${SPEECHSTREAM_TEST_KAFKA_IMAGE:-speechstream/kafka:4.1.1}
export SPEECHSTREAM_TEST_POSTGRES_IMAGE=${SPEECHSTREAM_TEST_POSTGRES_IMAGE:-speechstream/postgres:15}
# testcontainers' reaper is an image of its own, which cannot be pulled without a registry;
# the fixtures stop their containers themselves.
export TESTCONTAINERS_RYUK_DISABLED=${TESTCONTAINERS_RYUK_DISABLED:-true}
exec .venv/bin/pytest tests/containers tests/integration/test_pipeline.py \
  tests/integration/test_sink.py tests/integration/test_api.py "$@"
