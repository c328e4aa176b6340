"""`speechstream rescore`: re-emit accepted requests for another scoring version (which
version counts is `speechstream scoring`, in ``cli.commands.scoring``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tqdm import tqdm

from cli.commands.operator import operator_signer
from cli.commands.scoring import unknown_version
from cli.exceptions import CommandError, UsageError
from producers import rescore
from scoring.versions import known_versions
from speechstream.exceptions import SpeechstreamError
from speechstream.kafka.records import Verify
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer
from speechstream.trust import checked_reads

DEFAULT_WAIT_S = 24 * 3600.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``rescore`` command."""
    p = subparsers.add_parser(
        "rescore", help="re-score accepted submissions with another scoring version",
        description="Read the accepted evaluation requests from the log (evaluation.requests, "
        "one per hash: the earliest block; requests withdrawn as displaced duplicates left "
        "out) and re-emit the selected ones for --scoring-version "
        "on the evaluators' lower-priority lane (evaluation.rescores): evaluators take new "
        "submissions first and re-scores only while none waits. Event ids derive from the "
        "request and the version, and what the lane holds already is not queued again: "
        "running it twice queues nothing twice. Scores of every version live side by side; "
        "`speechstream scoring activate` makes the new one count. A version this engine does "
        "not compute, or a hash or hotkey with no accepted request, is refused and nothing is "
        "published (exit 1). Only requests, cancellations and scores signed by a key the "
        "operator trusts for them count (SPEECHSTREAM_TRUST_OPERATOR_KEY); the re-scores are "
        "signed with the operator's root key ($SPEECHSTREAM_OPERATOR_KEY_FILE).",
    )
    p.add_argument("--scoring-version", required=True, metavar="VERSION",
                   help=f"the version to score with ({', '.join(known_versions())})")
    which = p.add_argument_group("which requests (one of --all, --hash, --hotkey, "
                                 "--since-block; the filters given all apply)")
    which.add_argument("--all", action="store_true", help="every accepted request")
    which.add_argument("--hash", nargs="+", default=[], metavar="HASH",
                       help="these submission hashes")
    which.add_argument("--hotkey", help="this hotkey's accepted requests")
    which.add_argument("--since-block", type=int, metavar="B",
                       help="requests for submissions at block ≥ B")
    p.add_argument("--dry-run", action="store_true",
                   help="say what would be queued; publish nothing")
    p.add_argument("--wait", action="store_true",
                   help="then follow the scores until every selected hash has one of the "
                   "version (progress and an ETA on stderr)")
    p.add_argument("--timeout", type=float, default=DEFAULT_WAIT_S, metavar="S",
                   help="with --wait: give up after S seconds (exit 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")
    p.set_defaults(func=_rescore)


def _selection(args: argparse.Namespace) -> rescore.Selection | str:
    if not (args.all or args.hash or args.hotkey or args.since_block is not None):
        return "say which requests: --all, --hash, --hotkey or --since-block"
    if args.all and (args.hash or args.hotkey or args.since_block is not None):
        return "--all selects everything: give it alone"
    return rescore.Selection(all=args.all, hashes=tuple(args.hash), hotkey=args.hotkey,
                             since_block=args.since_block)


def _rescore(args: argparse.Namespace) -> int:
    selection = _selection(args)
    if isinstance(selection, str):
        raise UsageError(selection)
    problem = unknown_version(args.scoring_version)
    if problem:
        raise CommandError(f"{problem}; nothing published")
    signer = None if args.dry_run else operator_signer()
    with checked_reads(KafkaSettings(), rescore.PRODUCER_NAME) as store:
        return _run(args, selection, store.verify if store else None, signer)


def _run(args: argparse.Namespace, selection: rescore.Selection, verify: Verify | None,
         signer: Signer | None) -> int:
    kafka = KafkaSettings()
    started = time.monotonic()
    try:
        planned = rescore.plan(kafka, args.scoring_version, selection, verify)
    except SpeechstreamError as exc:
        raise CommandError(f"{exc}; nothing published") from exc
    out: dict[str, Any] = {
        "scoring_version": args.scoring_version, "selection": selection.describe(),
        "selected": len(planned.selected), "already_queued": planned.already_queued,
        "queued": 0, "dry_run": args.dry_run,
    }
    if args.dry_run:
        out["would_queue"] = [env.payload.hash for env in planned.queued]
        return _report(args, out, f"{len(planned.selected)} accepted requests selected "
                       f"({selection.describe()}); would queue {len(planned.queued)} for "
                       f"{args.scoring_version}, {planned.already_queued} already queued "
                       "(dry run: nothing published)")
    bar = tqdm(total=len(planned.queued), desc="re-emitted", unit="req", file=sys.stderr,
               disable=args.json or not planned.queued)
    try:
        out["queued"] = rescore.publish(kafka, planned.queued,
                                        on_sent=lambda n: bar.update(n - bar.n), signer=signer)
    finally:
        bar.close()
    elapsed = time.monotonic() - started
    out["elapsed_s"] = round(elapsed, 3)
    line = (f"queued {out['queued']} re-scores for {args.scoring_version} on "
            f"{kafka.topics.rescores} ({planned.already_queued} already queued; "
            f"{len(planned.selected)} selected: {selection.describe()}) in {elapsed:.1f}s")
    if not args.wait:
        return _report(args, out, line)
    if not args.json:
        print(line)
    return _follow(args, kafka, planned, out, verify)


def _follow(args: argparse.Namespace, kafka: KafkaSettings, planned: rescore.Plan,
            out: dict[str, Any], verify: Verify | None) -> int:
    watch = rescore.ScoreWatch(kafka, planned.version, planned.hashes, verify)
    bar = tqdm(total=len(planned.hashes), desc=f"scored ({planned.version})", unit="sub",
               file=sys.stderr, disable=args.json)
    started = time.monotonic()
    try:
        watch.poll(0)
        bar.update(watch.scored)
        done = watch.wait(args.timeout, lambda w: bar.update(w.scored - bar.n))
    finally:
        bar.close()
        watch.close()
    out.update(scored=watch.scored, completed=watch.completed, failed=watch.failed,
               pending=len(watch.pending), waited_s=round(time.monotonic() - started, 3))
    line = (f"{watch.scored} of {len(planned.hashes)} scored with {planned.version} "
            f"({watch.completed} COMPLETED, {watch.failed} FAILED)")
    if not done:
        _report(args, out, f"{line}; {len(watch.pending)} still pending after "
                f"{args.timeout:.0f}s")
        return 3
    return _report(args, out, f"{line}; activate it with `speechstream scoring activate "
                   f"{planned.version}`")


def _report(args: argparse.Namespace, out: dict[str, Any], line: str) -> int:
    print(json.dumps(out) if args.json else line)
    return 0
