"""`speechstream scoring status | activate`: the scoring version that counts."""

from __future__ import annotations

import argparse
import json
import logging

from cli.commands.operator import operator_signer
from cli.exceptions import CommandError
from producers import rescore
from scoring.versions import known_versions
from speechstream.settings import KafkaSettings
from speechstream.trust import checked_reads

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scoring`` command group."""
    scoring = subparsers.add_parser(
        "scoring", help="the scoring version that counts: status, activate",
    )
    sub = scoring.add_subparsers(dest="scoring_command", required=True)
    status = sub.add_parser(
        "status", help="the active version and how many accepted submissions each version "
        "has scored",
        description="Read scoring.active, evaluation.requests and scores from the log and "
        "print the active scoring version and, per version, how many of the accepted "
        "submissions have a score of it. Only events signed by a key the operator trusts "
        "for them count (SPEECHSTREAM_TRUST_OPERATOR_KEY; docs/security.md).",
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(func=_status)
    activate = sub.add_parser(
        "activate", help="make a scoring version the one that counts",
        description="Publish scoring.activated: the leaderboard, the API and the validators' "
        "weights use that version's scores from then on, and the intake worker requests new "
        "submissions for it; no service restarts. Refused (exit 1) while an accepted "
        "submission has no score of the version, unless --force: those would count as "
        "QUEUED until scored. Signed with the operator's root key "
        "($SPEECHSTREAM_OPERATOR_KEY_FILE, default ~/.speechstream/operator.json), which must "
        "be the key of $SPEECHSTREAM_TRUST_OPERATOR_KEY; readers refuse any other.",
    )
    activate.add_argument("version", help=f"the version ({', '.join(known_versions())})")
    activate.add_argument("--reason", help="recorded with the activation")
    activate.add_argument("--force", action="store_true",
                          help="activate although some submissions have no score of it yet")
    activate.set_defaults(func=_activate)


def unknown_version(version: str) -> str | None:
    """Why this engine cannot score ``version``, or None when it computes it."""
    if version in known_versions():
        return None
    return (f"unknown scoring version {version!r}: this engine computes "
            f"{', '.join(known_versions())}")


def _status(args: argparse.Namespace) -> int:
    kafka = KafkaSettings()
    with checked_reads(kafka, rescore.PRODUCER_NAME, log) as store:
        active, total, per = rescore.coverage(kafka, store.verify if store else None)
    if args.json:
        print(json.dumps({"active": active, "accepted": total, "versions": per}))
        return 0
    print(f"active scoring version: {active or 'none activated (each service its setting)'}")
    print(f"accepted submissions: {total}")
    for version in sorted(set(per) | set(known_versions())):
        c = per.get(version, {"COMPLETED": 0, "FAILED": 0})
        mark = " (active)" if version == active else ""
        print(f"  {version}{mark}: {c['COMPLETED'] + c['FAILED']} scored "
              f"({c['COMPLETED']} COMPLETED, {c['FAILED']} FAILED), "
              f"{total - c['COMPLETED'] - c['FAILED']} not scored")
    return 0


def _activate(args: argparse.Namespace) -> int:
    problem = unknown_version(args.version)
    if problem:
        raise CommandError(f"{problem}; not activated")
    signer = operator_signer()
    kafka = KafkaSettings()
    with checked_reads(kafka, rescore.PRODUCER_NAME, log) as store:
        active, total, per = rescore.coverage(kafka, store.verify if store else None)
    c = per.get(args.version, {"COMPLETED": 0, "FAILED": 0})
    missing = total - c["COMPLETED"] - c["FAILED"]
    if missing and not args.force:
        raise CommandError(f"{missing} of {total} accepted submissions have no {args.version} "
                           f"score yet; re-score them (`speechstream rescore --scoring-version "
                           f"{args.version} --all --wait`) or pass --force; not activated")
    rescore.activate(kafka, args.version, args.reason, signer=signer)
    print(f"scoring version {args.version} activated (was {active or 'none'}); "
          f"{total - missing} of {total} accepted submissions have a {args.version} score")
    return 0
