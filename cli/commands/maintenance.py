"""`speechstream maintenance [--apply] [--json]`: what needs an operator's hand, and the fixes
that are safe to make from here."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import psycopg

from cli.exceptions import CommandError, UsageError
from consumers.settings import EvaluatorSettings
from scoring.cache import KEEP_RECENT_S, cache_section
from sinks.maintenance import (
    dead_letter_groups,
    dead_letters_section,
    requests_section,
    waiting_submissions,
)
from speechstream.exceptions import SpeechstreamError
from speechstream.kafka.admin import describe_group, group_lag
from speechstream.maintenance import Report, parse_duration
from speechstream.settings import DatabaseSettings, KafkaSettings, ScoringSettings

DESCRIPTION = """\
List what needs a hand, one section each; with --apply, fix what can safely be fixed from
here. It never deletes topics or records.

evaluation requests
  Submissions QUEUED, PRECHECK or RUNNING (under the active scoring version, in PostgreSQL)
  for longer than --queued-after, next to the evaluator consumer group
  (SPEECHSTREAM_EVALUATOR_GROUP_ID): its members and its lag on evaluation.requests and
  evaluation.rescores. Needs a hand when such submissions wait and the group has no member,
  or when PostgreSQL holds a status but no evaluation request for one (never routed).
  --apply: nothing. It cannot start an evaluator; it says the command that does
  (`speechstream evaluator run`), and it cannot queue a request that was never routed.

model cache
  The hub snapshot cache (SPEECHSTREAM_SCORING_CACHE_DIR, default
  ~/.cache/speechstream/models) against SPEECHSTREAM_SCORING_CACHE_BUDGET_BYTES (default
  72 GiB). Needs a hand when it is over budget.
  --apply: deletes the least recently used snapshots until it fits, never one used within
  --keep-recent (an evaluation may be reading it). The only thing --apply deletes.

dead letters
  dead_letters rows (PostgreSQL) by consumer and reason (the error's first clause, numbers
  as N), with the newest of each group. Needs a hand when a group has one newer than
  --dead-letters-within. --apply: nothing (list only).

Exit status: 0 when nothing needs a hand, 1 when something does (after --apply: still
does), 2 for a bad argument or a broker or database that does not answer.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``maintenance`` command."""
    p = subparsers.add_parser(
        "maintenance", help="list what needs a hand; --apply fixes what it safely can",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--apply", action="store_true",
                   help="evict model snapshots past the cache budget (nothing else is changed)")
    p.add_argument("--queued-after", default="1h", metavar="DURATION",
                   help="a submission waiting longer than this is listed (default 1h; "
                   "30s, 15m, 2d, 1h30m)")
    p.add_argument("--dead-letters-within", default="24h", metavar="DURATION",
                   help="dead letters newer than this need a hand (default 24h)")
    p.add_argument("--keep-recent", default=f"{KEEP_RECENT_S:.0f}s", metavar="DURATION",
                   help="never evict a snapshot used within this (default 1h)")
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")
    p.set_defaults(func=_maintenance)


ERROR_EXIT = 2
"""The exit status of an error here: 1 means that something needs a hand."""


def _maintenance(args: argparse.Namespace) -> int:
    try:
        queued_after = parse_duration(args.queued_after)
        dead_within = parse_duration(args.dead_letters_within)
        keep_recent = parse_duration(args.keep_recent)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    kafka, evaluator, scoring = KafkaSettings(), EvaluatorSettings(), ScoringSettings()
    try:
        with psycopg.connect(DatabaseSettings().conninfo, connect_timeout=10) as conn:
            waiting = waiting_submissions(conn, queued_after)
            letters = dead_letter_groups(conn)
            now = conn.execute("SELECT now()").fetchone()[0]
    except psycopg.Error as exc:
        raise CommandError(f"cannot read PostgreSQL (DATABASE_URL): {exc}",
                           exit_status=ERROR_EXIT) from exc
    topics = [kafka.topics.evaluation_requests, kafka.topics.rescores]
    try:
        group = describe_group(kafka, evaluator.group_id)
        lag = group_lag(kafka, evaluator.group_id, topics)
    except SpeechstreamError as exc:
        raise CommandError(f"cannot ask the broker (KAFKA_BOOTSTRAP_SERVERS): {exc}",
                           exit_status=ERROR_EXIT) from exc
    report = Report([
        requests_section(waiting, group, lag, queued_after),
        cache_section(scoring.models_cache_dir, scoring.cache_budget_bytes, apply=args.apply,
                      keep_recent_s=keep_recent),
        dead_letters_section(letters, now or datetime.now(UTC), dead_within),
    ], applied=args.apply)
    print(report.json() if args.json else report.text())
    return report.exit_code
