#!/usr/bin/env bash
# The container tests: build the images, then run the compose stack's smoke test
# (tests/containers) and the pipeline, sink and API integration tests on testcontainers, from
# the project's Kafka and PostgreSQL images.
#
#   bash scripts/test-containers.sh [pytest args]   set up, build, run (the default)
#   bash scripts/test-containers.sh prepare         set up and build only
#   bash scripts/test-containers.sh run [pytest args]  run only (the images are built)
#
# As root on a Debian machine, setting up installs Debian's docker.io (the engine and a client
# that builds with BuildKit), mmdebstrap and docker-compose, and starts dockerd when no engine
# answers (log: build/dockerd.log). With SPEECHSTREAM_CONTAINERS_NICE=1 a dockerd started
# here runs at the lowest CPU and I/O priority (scripts/test.sh builds the images beside the
# other tests that way), and `run` raises it back first. Exits non-zero on any failure, and
# when no test was collected.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=all
case "${1:-}" in
  prepare | run) mode=$1; shift ;;
esac

engine_pids() { pgrep -x dockerd; pgrep -x containerd; pgrep -f containerd-shim || true; }

prepare() {
  [[ ${SPEECHSTREAM_SETUP_DONE:-0} == 1 ]] || bash scripts/setup.sh
  if ! command -v dockerd > /dev/null || ! command -v mmdebstrap > /dev/null \
      || ! command -v docker-compose > /dev/null; then
    echo "setup: apt-get install docker.io mmdebstrap docker-compose"
    apt-get update -q > /dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io mmdebstrap docker-compose \
      > /dev/null
  fi
  if ! docker info > /dev/null 2>&1; then
    echo "setup: starting dockerd (log: build/dockerd.log)"
    mkdir -p build
    low=()
    [[ ${SPEECHSTREAM_CONTAINERS_NICE:-0} == 1 ]] && low=(nice -n 19 ionice -c3)
    nohup "${low[@]}" dockerd > build/dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info > /dev/null 2>&1 && break; sleep 1; done
    docker info > /dev/null
  fi
  .venv/bin/speechstream dev images
}

run() {
  if [[ ${SPEECHSTREAM_CONTAINERS_NICE:-0} == 1 ]]; then
    # The engine built at the lowest priority; the containers of the tests get the usual one.
    for pid in $(engine_pids); do
      renice -n 0 -p "$pid" > /dev/null && ionice -c2 -n4 -p "$pid" || true
    done
  fi
  export SPEECHSTREAM_TEST_CONTAINERS=1
  export SPEECHSTREAM_TEST_INFRASTRUCTURE=testcontainers
  export SPEECHSTREAM_TEST_KAFKA_IMAGE=${SPEECHSTREAM_TEST_KAFKA_IMAGE:-speechstream/kafka:4.1.1}
  export SPEECHSTREAM_TEST_POSTGRES_IMAGE=${SPEECHSTREAM_TEST_POSTGRES_IMAGE:-speechstream/postgres:15}
  # testcontainers' reaper is an image of its own, which cannot be pulled without a registry;
  # the fixtures stop their containers themselves.
  export TESTCONTAINERS_RYUK_DISABLED=${TESTCONTAINERS_RYUK_DISABLED:-true}
  exec .venv/bin/pytest tests/containers tests/integration/test_pipeline.py \
    tests/integration/test_sink.py tests/integration/test_api.py "$@"
}

case $mode in
  prepare) prepare ;;
  run) run "$@" ;;
  all) prepare; run "$@" ;;
esac
