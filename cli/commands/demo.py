"""`speechstream demo`: the whole pipeline on the local stack, ending in a leaderboard."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from cli.demo import DemoOptions, run_demo
from devstack.databases import without_password
from speechstream.exceptions import SpeechstreamError
from speechstream.settings import DatabaseSettings, DevSettings, KafkaSettings

DESCRIPTION = """\
Start the local stack if it is not up, build three small TTS models (a real Musicgen
architecture, randomly initialized), register four miners, publish three valid submissions
and one with a wrong hash, run the intake worker, an evaluator, the sink, a validator and the
REST API (waiting until each answers as ready), show progress, then move the chain's head to
the next epoch and print the leaderboard from PostgreSQL, the validator's weights and the
API's answer for one submission.

Each run has a topic prefix (<prefix>demo-<run>.; its consumer groups and the intake worker's
changelog topics are named under it) and a database (speechstream_demo_<run>, migrated) of
its own on the stack, so it never reads what an earlier run left; it prints both. A run
removes the earlier runs' topics, databases and files (under STATE_DIR/runs/) that no client
is connected to, and keeps its own until the next run. With DATABASE_URL set, its role needs
CREATEDB. Deterministic: every run publishes the same events and prints the same leaderboard
and weights."""


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
    demo.add_argument("--ready-timeout", type=float, default=DemoOptions.ready_timeout_s,
                      help="seconds to wait for each service to answer as ready (default "
                      f"{DemoOptions.ready_timeout_s:.0f})")
    demo.add_argument("--linger", type=float, default=DemoOptions.linger_s, metavar="SECONDS",
                      help="keep the services running this long after the last step, for a "
                      "Prometheus scraping them (`speechstream dev up --prometheus`; default 0)")
    demo.add_argument("--json", action="store_true",
                      help="print the leaderboard, the weights and the API's answer as JSON")
    demo.add_argument("--serve", action="store_true",
                      help="at the end, serve the run's leaderboard pages and API until Ctrl-C")
    demo.add_argument("--port", type=int, default=8000,
                      help="the port --serve listens on (default 8000)")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from cli.commands.leaderboard import render
    from cli.commands.validator import render as render_weights

    options = DemoOptions(
        state_dir=args.state_dir, samples=args.samples, timeout_s=args.timeout,
        ready_timeout_s=args.ready_timeout, device=args.device, linger_s=args.linger,
    )
    try:
        # With --json, stdout is the JSON alone: the progress goes to stderr.
        say = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
        result = run_demo(options, KafkaSettings(), DatabaseSettings(), DevSettings(), say=say)
    except SpeechstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    run = result.run
    if args.json:
        print(json.dumps({
            "run": {"id": run.run_id, "topic_prefix": run.topic_prefix,
                    "database": run.database},
            "leaderboard": [r.model_dump(mode="json") for r in result.leaderboard],
            "weights": result.weights.model_dump(mode="json"),
            "api": {"url": result.api_url, "model_submission_details": result.api_answer},
            "evaluation_s": round(result.evaluation_s, 3),
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
    print()
    print(f"This run's topics and database stay until the next demo run; to look at them again:\n"
          f"  SPEECHSTREAM_TOPIC_PREFIX={run.topic_prefix} "
          f"DATABASE_URL={shlex.quote(without_password(result.database_url))} "
          "speechstream leaderboard")
    print()
    if not args.serve:
        print(f"Leaderboard pages (served while the demo ran; `speechstream demo --serve` keeps "
              f"them up): {result.api_url}/board")
        return 0
    from cli.commands.api import serve_pages

    print(f"Leaderboard pages: http://127.0.0.1:{args.port}/board (Ctrl-C stops)", flush=True)
    return serve_pages(result.database_url, run.topic_prefix, args.port)
