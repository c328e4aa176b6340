"""`speechstream demo`: the whole pipeline on the local stack, ending in a leaderboard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.demo import DemoOptions, run_demo
from speechstream.exceptions import SpeechstreamError
from speechstream.settings import DatabaseSettings, DevSettings, KafkaSettings

DESCRIPTION = """\
Start the local stack if it is not up, build three small TTS models (a real Musicgen
architecture, randomly initialized), register four miners, publish three valid submissions
and one with a wrong hash, run the validation worker, an evaluator and the sink, show
progress, and print the leaderboard from PostgreSQL. Deterministic: a second run publishes
the same events, which change nothing, and prints the same leaderboard."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command."""
    demo = subparsers.add_parser(
        "demo", help="run the whole pipeline and print the leaderboard",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--state-dir", type=Path, default=DemoOptions.state_dir,
                      help=f"models, keys and logs (default {DemoOptions.state_dir})")
    demo.add_argument("--samples", type=int, default=DemoOptions.samples,
                      help=f"samples scored per model (default {DemoOptions.samples})")
    demo.add_argument("--device", default=DemoOptions.device, help="evaluator device")
    demo.add_argument("--timeout", type=float, default=DemoOptions.timeout_s,
                      help="seconds to wait for the evaluations")
    demo.add_argument("--json", action="store_true", help="print the leaderboard as JSON")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from cli.commands.leaderboard import render

    options = DemoOptions(
        state_dir=args.state_dir, samples=args.samples, timeout_s=args.timeout,
        device=args.device,
    )
    try:
        rows = run_demo(options, KafkaSettings(), DatabaseSettings(), DevSettings())
    except SpeechstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print()
    print(render(rows, as_json=args.json))
    return 0
