"""`speechstream demo`: the whole pipeline on the local stack, ending in a leaderboard."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.demo import DemoOptions, run_demo
from speechstream.exceptions import SpeechstreamError
from speechstream.settings import DatabaseSettings, DevSettings, KafkaSettings

DESCRIPTION = """\
Start the local stack if it is not up, build three small TTS models (a real Musicgen
architecture, randomly initialized), register four miners, publish three valid submissions
and one with a wrong hash, run the intake worker, an evaluator, the sink, a validator and the
REST API, show progress, then move the chain's head to the next epoch and print the
leaderboard from PostgreSQL, the validator's weights and the API's answer for one submission.
Deterministic: a second run publishes the same events, which change nothing, and prints the
same leaderboard and weights."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command."""
    demo = subparsers.add_parser(
        "demo", help="run the whole pipeline; print the leaderboard, the weights, an API answer",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--state-dir", type=Path, default=DemoOptions.state_dir,
                      help=f"models, keys and logs (default {DemoOptions.state_dir})")
    demo.add_argument("--samples", type=int, default=DemoOptions.samples,
                      help=f"samples scored per model (default {DemoOptions.samples})")
    demo.add_argument("--device", default=DemoOptions.device, help="evaluator device")
    demo.add_argument("--timeout", type=float, default=DemoOptions.timeout_s,
                      help="seconds to wait for the evaluations")
    demo.add_argument("--json", action="store_true",
                      help="print the leaderboard, the weights and the API's answer as JSON")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from cli.commands.leaderboard import render
    from cli.commands.validator import render as render_weights

    options = DemoOptions(
        state_dir=args.state_dir, samples=args.samples, timeout_s=args.timeout,
        device=args.device,
    )
    try:
        result = run_demo(options, KafkaSettings(), DatabaseSettings(), DevSettings())
    except SpeechstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({
            "leaderboard": [r.model_dump(mode="json") for r in result.leaderboard],
            "weights": result.weights.model_dump(mode="json"),
            "api": {"url": result.api_url, "model_submission_details": result.api_answer},
        }, indent=2))
        return 0
    print()
    print(render(result.leaderboard))
    print()
    print(render_weights(result.weights))
    print()
    print(f"REST API (served at {result.api_url} while the demo ran; `speechstream api run` "
          "serves it again):")
    print(f"  GET /model_submission_details for alice → {json.dumps(result.api_answer)}")
    return 0
