#!/usr/bin/env bash
# Set up, then run the end-to-end demo (`speechstream demo`). Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/speechstream demo "$@"
