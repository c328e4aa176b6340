"""The demo's evaluation phase (three models scored, one rejected) before and after warm
evaluation processes and the reference cache, side by side in one run.

Run: ``.venv/bin/python -m bench.scoring.demo [--rounds 1]`` (starts the local stack if needed,
as the demo does). Runs ``speechstream demo --json`` once per way and round, the ways
alternating, and reads the phase's time (``evaluation_s``: from the submissions to every one
scored or rejected). Ways: ``cold`` (a fresh process per evaluation, no reference cache),
``warm`` (processes started ahead, no cache), ``warm + cache`` (processes started ahead, and a
reference cache the previous runs filled). Writes ``bench/results/demo-evaluations.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.report import write_results

RESULTS = Path(__file__).resolve().parents[1] / "results" / "demo-evaluations.json"


def _ways(cache_dir: Path) -> dict[str, dict[str, str]]:
    return {
        "cold": {"SPEECHSTREAM_SCORING_WARM": "false",
                 "SPEECHSTREAM_SCORING_REFERENCE_CACHE_BUDGET_BYTES": "0"},
        "warm": {"SPEECHSTREAM_SCORING_WARM": "true",
                 "SPEECHSTREAM_SCORING_REFERENCE_CACHE_BUDGET_BYTES": "0"},
        "warm + cache": {"SPEECHSTREAM_SCORING_WARM": "true",
                         "SPEECHSTREAM_SCORING_REFERENCE_CACHE_DIR": str(cache_dir)},
    }


def _demo(env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-m", "cli.main", "demo", "--json"],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"demo failed ({done.returncode}): {done.stderr[-2000:]}")
    return float(json.loads(done.stdout)["evaluation_s"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the demo per way and round; write the phase's times and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="speechstream-bench-refcache-") as tmp:
        ways = _ways(Path(tmp))
        # A run to fill the cache, not counted.
        _demo(ways["warm + cache"])
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, env in ways.items():
                seconds[name].append(round(_demo(env), 2))
    cold = statistics.median(seconds["cold"])
    result: dict[str, Any] = {"rounds": args.rounds, "ways": {
        name: {"evaluation_s": got, "median_s": statistics.median(got),
               "speedup_vs_cold": round(cold / statistics.median(got), 2)}
        for name, got in seconds.items()}}
    return write_results(result, args.out)


if __name__ == "__main__":
    main()
