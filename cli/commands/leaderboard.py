"""`speechstream leaderboard [--json]`: the models by status and score, from PostgreSQL."""

from __future__ import annotations

import argparse
import json

import psycopg

from cli.exceptions import CommandError
from sinks.queries import LeaderboardRow, leaderboard
from speechstream.settings import DatabaseSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``leaderboard`` command."""
    board = subparsers.add_parser(
        "leaderboard", help="the models by status and score, from PostgreSQL",
        description="Every submission (COMPLETED by score first, then in progress, FAILED) and "
        "every rejected one with its reason, read from DATABASE_URL. A score whose latest "
        "audit disagrees (or could not re-score it) says so in its notes.",
    )
    board.add_argument("--json", action="store_true",
                       help="print a JSON list of rows (with each score's manifest and latest "
                       "audit)")
    board.set_defaults(func=_leaderboard)


def render(rows: list[LeaderboardRow], *, as_json: bool = False) -> str:
    """The leaderboard as a fixed-width table, or as JSON."""
    if as_json:
        return json.dumps([r.model_dump(mode="json") for r in rows], indent=2)
    header = f"{'#':>2}  {'uid':>4}  {'repo':<24} {'status':<10} {'score':>8}  notes"
    versions = sorted({r.scoring_version for r in rows if r.scoring_version})
    lines = [f"scoring version: {', '.join(versions)}"] if versions else []
    lines += [header, "-" * len(header)]
    for i, r in enumerate(rows, start=1):
        score = f"{r.score:.6f}" if r.score is not None else "-"
        uid = str(r.uid) if r.uid is not None else "-"
        notes = "; ".join(n for n in (r.notes, r.audit_note) if n).replace("\n", " ")
        lines.append(f"{i:>2}  {uid:>4}  {(r.repo or '-'):<24} {r.status:<10} {score:>8}  {notes}")
    return "\n".join(lines)


def _leaderboard(args: argparse.Namespace) -> int:
    try:
        with psycopg.connect(DatabaseSettings().conninfo) as conn:
            rows = leaderboard(conn)
    except psycopg.Error as exc:
        raise CommandError(f"cannot read the leaderboard: {exc}") from exc
    print(render(rows, as_json=args.json))
    return 0
