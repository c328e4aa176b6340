"""Maintenance checks on the materialized tables: requests waiting with no evaluator to take
them, and dead letters by consumer and reason (``speechstream maintenance``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row
from pydantic import BaseModel

from schemas.fields import FINAL_RANK, STATUS_RANK
from speechstream.kafka.admin import GroupInfo
from speechstream.maintenance import Section, format_duration

WAITING_STATUSES = tuple(s for s, r in STATUS_RANK.items() if r < FINAL_RANK)
"""QUEUED, PRECHECK, RUNNING: a submission in one of these has no score of the active version."""

EVALUATOR_COMMAND = "speechstream evaluator run"
_REASON_MAX = 80


class WaitingSubmission(BaseModel):
    """A submission still waiting for its score (of the active scoring version)."""

    hash: str
    hotkey: str | None
    uid: int | None
    repo: str | None
    status: str
    scoring_version: str | None
    since: datetime
    """When it started waiting in this status: its last status or its request; for a
    submission awaiting a re-score, no earlier than the activation of the version."""
    age_s: float
    request_recorded: bool
    """Whether PostgreSQL holds its evaluation request (False: only a status was written)."""


# The view gives the status under the active version; the table gives the times. A submission
# whose own version is not the active one waits since the later of its own last change, the
# activation and its last status event of the active version. A status whose request
# PostgreSQL does not hold has no standing (the view starts from the requests): it is listed
# from its own row, request_recorded false.
_WAITING = """
WITH active AS (
    SELECT activated_at FROM scoring_activations
     ORDER BY position DESC NULLS LAST, activated_at DESC, event_id DESC LIMIT 1
), waiting AS (
    SELECT v.hash, v.hotkey, v.uid, v.repo_namespace || '/' || v.repo_name AS repo, v.status,
           v.scoring_version, s.request_event_id IS NOT NULL AS request_recorded,
           CASE WHEN v.scoring_version IS NOT DISTINCT FROM s.scoring_version
                THEN coalesce(s.status_at, s.requested_at, s.created_at)
                ELSE greatest(coalesce(s.status_at, s.requested_at, s.created_at),
                              (SELECT activated_at FROM active),
                              (SELECT max(e.time) FROM status_events e
                                WHERE e.hash = v.hash AND e.scoring_version = v.scoring_version))
           END AS since
      FROM submission_standing v
      JOIN submissions s ON s.hash = v.hash
     WHERE v.status = ANY(%(statuses)s)
    UNION ALL
    SELECT s.hash, s.hotkey, s.uid, s.repo_namespace || '/' || s.repo_name, s.status,
           s.scoring_version, false, coalesce(s.status_at, s.created_at)
      FROM submissions s
     WHERE s.status = ANY(%(statuses)s)
       AND NOT EXISTS (SELECT 1 FROM evaluation_requests r WHERE r.hash = s.hash)
)
SELECT *, extract(epoch FROM now() - since)::float8 AS age_s
  FROM waiting
 WHERE since <= now() - make_interval(secs => %(older_than_s)s)
 ORDER BY since, hash
"""


def waiting_submissions(conn: psycopg.Connection, older_than_s: float
                        ) -> list[WaitingSubmission]:
    """Submissions QUEUED, PRECHECK or RUNNING (under the active scoring version) for at least
    ``older_than_s`` seconds, the longest waiting first."""
    with conn.cursor(row_factory=class_row(WaitingSubmission)) as cur:
        return cur.execute(_WAITING, {"statuses": list(WAITING_STATUSES),
                                      "older_than_s": older_than_s}).fetchall()


def requests_section(waiting: list[WaitingSubmission], group: GroupInfo,
                     lag: Mapping[str, int], older_than_s: float, *, limit: int = 20
                     ) -> Section:
    """The waiting requests next to the evaluator group: they need a hand when the group has
    no member, or when PostgreSQL holds no request for them (no evaluator will see one)."""
    threshold = format_duration(older_than_s)
    members = (f"evaluator group {group.group}: {group.members} member(s), "
               f"{group.members_with_partitions} with partitions ({group.state})")
    lags = ", ".join(f"{topic} {n}" for topic, n in lag.items()) or "no topics"
    unrouted = [w for w in waiting if not w.request_recorded]
    idle = bool(waiting) and group.members == 0
    lines = [members, f"group lag (records not consumed): {lags}"]
    for w in waiting[:limit]:
        missing = "" if w.request_recorded else "; NO REQUEST in PostgreSQL"
        uid = "-" if w.uid is None else w.uid
        lines.append(f"{w.status:<8} {format_duration(w.age_s):>8}  {w.hash}  {w.repo or '-'} "
                     f"(uid {uid}, {w.scoring_version}{missing})")
    if len(waiting) > limit:
        lines.append(f"... and {len(waiting) - limit} more (--json lists them all)")
    actions: list[str] = []
    if idle:
        actions.append(f"start an evaluator in group {group.group}: `{EVALUATOR_COMMAND}` "
                       f"(with SPEECHSTREAM_EVALUATOR_GROUP_ID={group.group}); it takes the "
                       "waiting requests from the log. --apply cannot start one")
    if unrouted:
        actions.append(f"{len(unrouted)} submission(s) have a status but no evaluation "
                       "request in "
                       "PostgreSQL (never routed, or the sink has not written it): no evaluator "
                       "will take them and nothing here can queue them; look at the intake "
                       "worker's log and the dead letters")
    if not waiting:
        summary = f"no request waiting longer than {threshold}"
    elif idle:
        summary = (f"{len(waiting)} waiting longer than {threshold} and the evaluator group "
                   "has no member")
    else:
        summary = (f"{len(waiting)} waiting longer than {threshold}; the evaluator group has "
                   f"{group.members} member(s), so they are not waiting for want of one")
    return Section(
        "evaluation requests", idle or bool(unrouted), summary, lines,
        "; ".join(actions) or None,
        {"older_than_s": older_than_s, "group": group.group, "group_state": group.state,
         "group_members": group.members, "lag": dict(lag), "no_evaluator": idle,
         "waiting": [w.model_dump(mode="json") for w in waiting],
         "without_request": [w.hash for w in unrouted]},
    )


# -- dead letters -------------------------------------------------------------------------

_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")


def normalize_reason(error: str) -> str:
    """A dead letter's reason without its particulars: the first clause (up to the first
    colon), numbers as ``N``, at most 80 characters (``not JSON: Expecting value: line 1`` →
    ``not JSON``; ``unsupported schema version 7 (this build reads 1)`` → ``unsupported schema
    version N (this build reads N)``)."""
    head = error.split(":", 1)[0]
    head = _SPACE.sub(" ", _DIGITS.sub("N", head)).strip()
    if len(head) > _REASON_MAX:
        head = head[:_REASON_MAX - 1] + "…"
    return head or "(no reason)"


@dataclass(frozen=True)
class DeadLetterGroup:
    """Dead letters of one consumer with one normalized reason."""

    consumer: str
    reason: str
    count: int
    newest: datetime
    topics: tuple[str, ...]
    example: str
    """One full error of the group, as written."""


_DEAD_LETTERS = """
SELECT consumer, error, topic, count(*)::int, max(time)
  FROM dead_letters
 GROUP BY consumer, error, topic
"""


def group_dead_letters(rows: list[tuple[str, str, str, int, datetime]]
                       ) -> list[DeadLetterGroup]:
    """Fold (consumer, error, topic, count, newest) rows into groups by consumer and normalized
    reason, the most recent group first."""
    folded: dict[tuple[str, str], list[tuple[str, str, str, int, datetime]]] = {}
    for row in rows:
        folded.setdefault((row[0], normalize_reason(row[1])), []).append(row)
    groups = [
        DeadLetterGroup(
            consumer, reason, sum(r[3] for r in members), max(r[4] for r in members),
            tuple(sorted({r[2] for r in members})),
            max(members, key=lambda r: r[4])[1],
        )
        for (consumer, reason), members in folded.items()
    ]
    return sorted(groups, key=lambda g: (g.newest, g.count), reverse=True)


def dead_letter_groups(conn: psycopg.Connection) -> list[DeadLetterGroup]:
    """Every dead letter in PostgreSQL, by consumer and normalized reason."""
    return group_dead_letters(conn.execute(_DEAD_LETTERS).fetchall())


def dead_letters_section(groups: list[DeadLetterGroup], now: datetime, within_s: float
                         ) -> Section:
    """Dead letters by consumer and reason; they need a hand when a group has one newer than
    ``within_s`` seconds (older ones are history: the table keeps every dead letter)."""
    recent = [g for g in groups if (now - g.newest).total_seconds() <= within_s]
    total = sum(g.count for g in groups)
    lines = [f"{g.count:>6}  {g.consumer}  {g.reason}  (newest {g.newest:%Y-%m-%d %H:%M:%S}, "
             f"{format_duration((now - g.newest).total_seconds())} ago; "
             f"{', '.join(g.topics)})" for g in groups]
    window = format_duration(within_s)
    if not groups:
        summary = "no dead letters"
    elif recent:
        summary = (f"{sum(g.count for g in recent)} of {total} dead letters in "
                   f"{len(recent)} group(s) have one newer than {window}")
    else:
        summary = f"{total} dead letters, none newer than {window}"
    action = None
    if recent:
        action = ("none from here (list only): read the records (`SELECT topic, partition, "
                  "\"offset\", error, raw FROM dead_letters`) and fix their producer; the log "
                  "keeps them")
    return Section(
        "dead letters", bool(recent), summary, lines, action,
        {"within_s": within_s, "total": total,
         "groups": [{"consumer": g.consumer, "reason": g.reason, "count": g.count,
                     "newest": g.newest.isoformat(), "topics": list(g.topics),
                     "example": g.example, "recent": g in recent} for g in groups]},
    )
