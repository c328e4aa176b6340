#!/usr/bin/env bash
# Set up, check the layers, then run the unit and integration tests against a real Kafka broker
# and PostgreSQL, and the container tests.
#
# The layers (schemas → floor → stages → roof, pyproject.toml [tool.importlinter]) are checked
# by import-linter first: an import that breaks one fails here. The integration fixtures use
# $KAFKA_BOOTSTRAP_SERVERS and $DATABASE_URL when both are set, testcontainers with
# SPEECHSTREAM_TEST_INFRASTRUCTURE=testcontainers, and otherwise start their own local stack.
# Extra arguments go to that pytest run.
#
# The container tests (scripts/test-containers.sh: the images, the compose stack's smoke test,
# the pipeline, sink and API tests on testcontainers) run after it. Their images are built
# meanwhile, in the background, by a Docker engine at the lowest CPU and I/O priority (log:
# build/test-containers-prepare.log). SPEECHSTREAM_TEST_CONTAINERS=0 leaves them out, =1 asks
# for them; by default they run where a Docker engine answers or this is root with apt-get,
# unless extra arguments pick some tests.
# Exits non-zero on any failure, and when no test was collected.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lint-imports

containers=${SPEECHSTREAM_TEST_CONTAINERS:-auto}
if [[ $containers == auto && $# -gt 0 ]]; then
  containers=0
  echo "containers: left out (tests picked; SPEECHSTREAM_TEST_CONTAINERS=1 adds them)"
elif [[ $containers == auto ]]; then
  containers=0
  if docker info > /dev/null 2>&1 || { [[ $EUID -eq 0 ]] && command -v apt-get > /dev/null; }; then
    containers=1
  else
    echo "containers: left out (no Docker engine answers, and this is not root with apt-get)"
  fi
fi

prepared=
if [[ $containers == 1 ]]; then
  mkdir -p build
  echo "containers: building the images in the background (log: build/test-containers-prepare.log)"
  SPEECHSTREAM_SETUP_DONE=1 SPEECHSTREAM_CONTAINERS_NICE=1 nice -n 19 ionice -c3 \
    bash scripts/test-containers.sh prepare > build/test-containers-prepare.log 2>&1 &
  prepared=$!
  trap 'kill "$prepared" 2> /dev/null || true' EXIT
fi

# The slowest tests are listed at the end: the whole command's budget is 45 minutes.
status=0
env -u SPEECHSTREAM_TEST_CONTAINERS .venv/bin/pytest tests --durations=30 "$@" || status=$?

if [[ -n $prepared ]]; then
  started=$SECONDS
  if wait "$prepared"; then
    trap - EXIT
    echo "containers: images ready (waited $((SECONDS - started)) s after the tests above)"
    SPEECHSTREAM_CONTAINERS_NICE=1 bash scripts/test-containers.sh run || status=$?
  else
    echo "containers: building the images failed; the end of build/test-containers-prepare.log:"
    tail -n 40 build/test-containers-prepare.log
    status=1
  fi
fi
exit "$status"
