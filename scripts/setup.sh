#!/usr/bin/env bash
# Set up this checkout on a Debian machine: system packages, .venv, the Kafka jars. Idempotent.
#
# Installs only what is missing (apt-get needs root or sudo): PostgreSQL, flite, espeak-ng,
# kcat, sox, a JDK and Maven, Chromium and its driver, Prometheus (for promtool). Creates .venv with Python 3.11, installs the project with its dev
# extras (pip's cache is reused; nothing is reinstalled when pyproject.toml has not changed),
# and fetches the pinned Apache Kafka release's jars from Maven Central into
# ~/.cache/speechstream (or $SPEECHSTREAM_DEV_CACHE_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }

missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
have flite || missing+=(flite)
have espeak-ng || missing+=(espeak-ng)
have kcat || missing+=(kcat)
have sox || missing+=(sox)
have java || missing+=(default-jdk-headless)
have mvn || missing+=(maven)
have python3.11 || missing+=(python3.11 python3.11-venv)
# The leaderboard pages' browser test: Debian's Chromium, headless, and its WebDriver.
have chromium || missing+=(chromium)
have chromedriver || missing+=(chromium-driver)
# The alert rules' unit tests: Debian's Prometheus ships promtool.
have promtool || missing+=(prometheus)

if ((${#missing[@]})); then
  sudo=()
  if [[ $EUID -ne 0 ]]; then
    have sudo || { echo "setup: run as root to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "setup: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv (python3.11)"
  python3.11 -m venv .venv
fi

# uv keeps a wheel cache (~/.cache/uv) that plain pip does not here, so the multi-GB torch
# wheels are downloaded once per machine, not once per checkout.
stamp=.venv/.speechstream-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp || ! -x .venv/bin/speechstream ]]; then
  [[ -x .venv/bin/uv ]] || .venv/bin/python -m pip install -q uv
  echo "setup: uv pip install -e '.[dev,evaluator]'"
  .venv/bin/uv pip install -q --python .venv/bin/python -e '.[dev,evaluator]'
  touch "$stamp"
fi

# The Parler-TTS evaluator environment (.venv-parler; it pins an older transformers).
bash scripts/setup-parler.sh

.venv/bin/speechstream dev fetch >/dev/null
echo "setup: ready"
