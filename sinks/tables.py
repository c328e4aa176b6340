"""Each sink table described once: its columns and types, its key, and what feeds it how.

A :class:`Table` is a materialized table as the migrations create it (the columns the sink
writes; others have defaults). A :class:`Feed` is what one kind of event writes into a table:
its columns (rows are tuples in this order, addressed by name through :meth:`Feed.position`),
where each value comes from in the envelope, and the merge rule that makes a replay change
nothing. The staging tables, the COPY statements, the merges, the straight COPY into the target
and the row counts are all derived from these descriptions (``sinks.statements``); the sink
checks them against the database when it starts.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from typing import Any

from psycopg.types.json import Jsonb
from pydantic import BaseModel

from schemas.envelope import Envelope
from schemas.events import (
    DeadLetter,
    EvaluationCancelled,
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerboardUpdated,
    MinerRegistered,
    SampleAudio,
    ScoreAudited,
    ScoreComputed,
    ScoringActivated,
    SubmissionRejected,
    UidHandover,
    UidRevoked,
    WeightsComputed,
)
from schemas.fields import FINAL_RANK, STATUS_RANK

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Column:
    """A column the sink writes, with its SQL type as the migrations declare it."""

    name: str
    type: str


@dataclass(frozen=True)
class Table:
    """A materialized table: its conflict key and the columns the sink writes."""

    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column:
        """The column called ``name`` (KeyError when the table has none)."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name} has no column {name!r}")


# -- merge rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InsertNew:
    """Insert rows whose key is new; a key already written keeps its row. Within a batch, the
    first row by ``order`` wins (no order: the key is the whole identity, any row will do)."""

    order: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeepLatest:
    """Upsert: the row with the highest ``by`` (compared as a tuple) wins, in or across batches."""

    by: tuple[str, ...]


@dataclass(frozen=True)
class FillOnce:
    """Insert, or fill a row created earlier by another feed (``unless`` is still NULL there);
    a row this feed wrote keeps it. ``keep`` columns, once set, stay. Within a batch, the first
    row by ``order`` wins."""

    unless: str
    order: tuple[str, ...]
    keep: tuple[str, ...] = ()
    touch: str = "updated_at"


@dataclass(frozen=True)
class Advance:
    """Upsert that only ever moves a row to a higher ``rank``; ``keep`` columns, once set, stay.
    Rows at ``lowest`` rank can never move a row, so they only create missing ones. With
    ``same``, a row moves only when those columns are unset or equal in the new row (a status
    or score of another scoring version leaves a submission's row alone)."""

    rank: str
    keep: tuple[str, ...] = ()
    same: tuple[str, ...] = ()
    lowest: int = 0
    touch: str = "updated_at"


Merge = InsertNew | KeepLatest | FillOnce | Advance


# -- feeds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where one staged column's value comes from: a field of the payload
    (``payload.hash``), of the item in a fan-out feed (``item.index``), of the envelope
    (``event_id``, ``time``) or the record's offset in its partition (``log.offset``),
    optionally converted. A feed lists its payload sources first, then its item sources, then
    its envelope sources, then its log source (rows are built from one attribute getter
    each; the offset is appended by ``sinks.rows``)."""

    column: str
    path: str
    convert: Callable[[Any], Any] | None = None

    @property
    def of(self) -> str:
        """``payload``, ``item``, ``envelope`` or ``log`` (the record's offset)."""
        head, dot, _ = self.path.partition(".")
        return head if dot else "envelope"

    @property
    def field(self) -> str:
        """The attribute read from the payload, the item or the envelope."""
        return self.path.partition(".")[2] or self.path


@dataclass(frozen=True)
class Projection:
    """After its feed is merged, the feed table's rows for the batch's keys are written into
    ``table`` too: ``columns`` maps each target column to a column of the feed's table or to a
    constant (``rank`` is constant); rows whose ``unless`` column is set are left out."""

    table: Table
    columns: Mapping[str, str]
    constants: Mapping[str, Any]
    merge: Merge
    unless: str | None = None
    """A column of the feed's table: rows where it is set are not projected."""


@dataclass(frozen=True)
class Feed:
    """What one kind of event writes into one table, staged as ``stage_<name>``.

    ``each`` fans a payload out over one of its lists (a row per item). ``constants`` are set
    on insert. ``direct``: while nothing in the batch conflicts, rows may be COPYed straight
    into the table (the merge would insert them as they are). A feed without ``event`` is
    derived from other feeds' rows by the writer.
    """

    name: str
    table: Table
    sources: tuple[Source, ...]
    merge: Merge
    event: type[BaseModel] | None = None
    each: str | None = None
    constants: Mapping[str, Any] = field(default_factory=dict)
    direct: bool = False
    then: Projection | None = None

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """The staged columns, in row order."""
        return tuple(s.column for s in self.sources)

    def position(self, column: str) -> int:
        """Where ``column`` sits in this feed's rows."""
        return self.columns.index(column)

    @cached_property
    def positioned(self) -> bool:
        """Whether its rows end with the record's offset (a ``log.offset`` source)."""
        return any(s.of == "log" for s in self.sources)

    def extractor(self) -> Callable[[Envelope, list[Row]], None]:
        """A function that appends this feed's rows for one envelope: one attribute getter
        (a single tuple a row; the sink builds hundreds of thousands). A positioned feed's
        rows lack their last column, the offset, which ``sinks.rows`` appends."""
        kinds = [s.of for s in self.sources]
        order = ("payload", "item", "envelope", "log")
        if kinds != sorted(kinds, key=order.index) or kinds.count("log") > 1 or (
                "log" in kinds and self.each is not None):
            raise ValueError(f"feed {self.name}: list payload, then item, then envelope "
                             "sources, then at most one log source (not in a fan-out feed)")
        sources = [s for s in self.sources if s.of != "log"]
        converts = [(i, s.convert) for i, s in enumerate(sources) if s.convert]
        if self.each is not None:
            if converts:
                raise ValueError(f"feed {self.name}: fan-out feeds take no conversions")
            items = attrgetter(self.each)
            head = _getter([s.path for s in sources if s.of == "payload"])
            item = _getter([s.field for s in sources if s.of == "item"])
            tail = _getter([s.path for s in sources if s.of == "envelope"])

            def fan_out(env: Envelope, out: list[Row]) -> None:
                common, last = head(env), tail(env)
                out.extend(common + item(one) + last for one in items(env))

            return fan_out
        row_of = _getter([s.path for s in sources])
        if not converts:
            return lambda env, out: out.append(row_of(env))

        def convert_one(env: Envelope, out: list[Row]) -> None:
            row = list(row_of(env))
            for i, fn in converts:
                row[i] = fn(row[i])
            out.append(tuple(row))

        return convert_one


def _getter(paths: list[str]) -> Callable[[Any], Row]:
    """``attrgetter`` that always returns a tuple (also for one or no path)."""
    if not paths:
        return lambda _: ()
    if len(paths) == 1:
        one = attrgetter(paths[0])
        return lambda obj: (one(obj),)
    return attrgetter(*paths)


def _json_model(model: BaseModel | None) -> Jsonb | None:
    """A pydantic model as a jsonb value; None stays SQL NULL."""
    return None if model is None else Jsonb(model.model_dump(mode="json"))


def _no_uid(_: int) -> None:
    """A revoked hotkey's row holds no uid (SQL NULL)."""
    return None


def _payload(*names: str) -> tuple[Source, ...]:
    return tuple(Source(name, f"payload.{name}") for name in names)


# -- the tables ----------------------------------------------------------------------------

MINERS = Table("miners", ("hotkey",), (
    Column("hotkey", "text"), Column("uid", "integer"), Column("coldkey", "text"),
    Column("block", "bigint"), Column("event_id", "text"), Column("registered_at", "timestamptz"),
))
SUBMISSIONS = Table("submissions", ("hash",), (
    Column("hash", "text"), Column("hotkey", "text"), Column("uid", "integer"),
    Column("repo_namespace", "text"), Column("repo_name", "text"), Column("revision", "text"),
    Column("config_template", "text"), Column("competition_id", "text"),
    Column("block", "bigint"), Column("scoring_version", "text"), Column("status", "text"),
    Column("status_rank", "smallint"), Column("notes", "text"),
    Column("score", "double precision"), Column("request_event_id", "text"),
    Column("requested_at", "timestamptz"), Column("status_at", "timestamptz"),
))
STATUS_EVENTS = Table("status_events", ("event_id",), (
    Column("event_id", "text"), Column("hash", "text"), Column("status", "text"),
    Column("scoring_version", "text"), Column("evaluator", "text"), Column("note", "text"),
    Column("time", "timestamptz"), Column("rescore_of", "text"),
))
SCORES = Table("scores", ("hash", "scoring_version"), (
    Column("hash", "text"), Column("scoring_version", "text"), Column("status", "text"),
    Column("total_score", "double precision"), Column("reason", "text"),
    Column("revision", "text"), Column("evaluator", "text"), Column("timings", "jsonb"),
    Column("event_id", "text"), Column("request_event_id", "text"),
    Column("computed_at", "timestamptz"), Column("content_hash", "text"),
    Column("manifest", "jsonb"), Column("rescore_of", "text"),
))
SAMPLE_RESULTS = Table("sample_results", ("score_event_id", "index"), (
    Column("hash", "text"), Column("scoring_version", "text"), Column("index", "integer"),
    Column("text", "text"), Column("speaker", "text"), Column("ce", "double precision"),
    Column("wer", "double precision"), Column("transcription", "text"),
    Column("score", "double precision"), Column("error", "text"), Column("note", "text"),
    Column("description", "text"), Column("score_event_id", "text"),
))
SAMPLE_AUDIO = Table("sample_audio", ("score_event_id", "evaluator", "index", "clip"), (
    Column("score_event_id", "text"), Column("index", "integer"), Column("clip", "text"),
    Column("hash", "text"), Column("scoring_version", "text"), Column("evaluator", "text"),
    Column("request_event_id", "text"), Column("sample_rate", "integer"),
    Column("duration_s", "double precision"), Column("opus", "bytea"), Column("mp3", "bytea"),
    Column("event_id", "text"),
))
AUDITS = Table("audits", ("event_id",), (
    Column("event_id", "text"), Column("hash", "text"), Column("scoring_version", "text"),
    Column("verdict", "text"), Column("score_event_id", "text"), Column("evaluator", "text"),
    Column("auditor", "text"), Column("scored_status", "text"),
    Column("scored_total", "double precision"), Column("audited_status", "text"),
    Column("audited_total", "double precision"), Column("tolerance", "double precision"),
    Column("reason", "text"), Column("differences", "jsonb"), Column("manifest", "jsonb"),
    Column("audited_at", "timestamptz"),
))
REJECTIONS = Table("rejections", ("event_id",), (
    Column("event_id", "text"), Column("code", "text"), Column("message", "text"),
    Column("source_event_id", "text"), Column("source_type", "text"), Column("hotkey", "text"),
    Column("uid", "integer"), Column("hash", "text"), Column("repo_namespace", "text"),
    Column("repo_name", "text"), Column("block", "bigint"), Column("time", "timestamptz"),
))
DEAD_LETTERS = Table("dead_letters", ("event_id",), (
    Column("event_id", "text"), Column("topic", "text"), Column("partition", "integer"),
    Column("offset", "bigint"), Column("error", "text"), Column("consumer", "text"),
    Column("raw", "bytea"), Column("time", "timestamptz"),
))

WEIGHTS = Table("weights", ("validator", "epoch"), (
    Column("validator", "text"), Column("epoch", "bigint"), Column("block", "bigint"),
    Column("event_id", "text"), Column("computed_at", "timestamptz"),
    Column("position", "bigint"),
))
WEIGHT_ENTRIES = Table("weight_entries", ("validator", "epoch", "uid"), (
    Column("validator", "text"), Column("epoch", "bigint"), Column("uid", "integer"),
    Column("hotkey", "text"), Column("hash", "text"), Column("repo", "text"),
    Column("block", "bigint"), Column("status", "text"), Column("score", "double precision"),
    Column("content_hash", "text"), Column("win_rate", "double precision"),
    Column("invalid", "text"), Column("weight", "double precision"),
))
MINERBOARD = Table("minerboard", ("uid",), (
    Column("uid", "integer"), Column("hash", "text"), Column("hotkey", "text"),
    Column("block", "bigint"), Column("event_id", "text"), Column("updated_at", "timestamptz"),
))
WITHDRAWALS = Table("withdrawals", ("request_event_id",), (
    Column("request_event_id", "text"), Column("hash", "text"), Column("hotkey", "text"),
    Column("uid", "integer"), Column("block", "bigint"), Column("code", "text"),
    Column("reason", "text"), Column("displaced_by", "text"),
    Column("displaced_by_hash", "text"), Column("event_id", "text"),
    Column("withdrawn_at", "timestamptz"),
))
SCORING_ACTIVATIONS = Table("scoring_activations", ("event_id",), (
    Column("event_id", "text"), Column("scoring_version", "text"), Column("reason", "text"),
    Column("activated_at", "timestamptz"), Column("position", "bigint"),
))
EVALUATION_REQUESTS = Table("evaluation_requests", ("event_id",), (
    Column("event_id", "text"), Column("hash", "text"), Column("hotkey", "text"),
    Column("uid", "integer"), Column("repo_namespace", "text"), Column("repo_name", "text"),
    Column("block", "bigint"), Column("scoring_version", "text"),
    Column("source_event_id", "text"), Column("requested_at", "timestamptz"),
))

TABLES: tuple[Table, ...] = (
    MINERS, SUBMISSIONS, STATUS_EVENTS, SCORES, SAMPLE_RESULTS, SAMPLE_AUDIO, AUDITS, REJECTIONS,
    DEAD_LETTERS, WEIGHTS, WEIGHT_ENTRIES, MINERBOARD, SCORING_ACTIVATIONS, WITHDRAWALS,
    EVALUATION_REQUESTS,
)
"""Every materialized table (row counts, rebuilds and the schema check go over these)."""

VIEWS: tuple[str, ...] = ("submission_standing",)
"""The views the migrations create over the tables (a rebuild's swap drops them with the old
tables; the leaderboard and the REST API read ``submission_standing``)."""

# A submission's status columns, as a status event or a score sets them.
# A re-score (another scoring version) has its own rows in ``scores``; the submission's row
# follows the version it was requested for.
_ADVANCE_STATUS = Advance(rank="status_rank", keep=("scoring_version",),
                          same=("scoring_version",), lowest=STATUS_RANK["QUEUED"])

STATUS_EVENTS_FEED = Feed(
    "status_events", STATUS_EVENTS,
    (*_payload("hash", "status", "scoring_version", "evaluator", "note", "rescore_of"),
     Source("event_id", "event_id"), Source("time", "time")),
    InsertNew(), event=EvaluationStatusChanged, direct=True,
)
QUEUED_FEED = Feed(
    # A routed request is its submission's QUEUED status (the intake worker sends no status
    # event for it): its row in ``status_events`` carries the request's event id.
    "queued", STATUS_EVENTS,
    (*_payload("hash", "scoring_version"), Source("event_id", "event_id"),
     Source("time", "time")),
    InsertNew(), event=EvaluationRequested, constants={"status": "QUEUED"}, direct=True,
)
REQUESTS_FEED = Feed(
    "requests", SUBMISSIONS,
    (*_payload("hash", "hotkey", "uid", "repo_namespace", "repo_name", "revision",
               "config_template", "competition_id", "block", "scoring_version"),
     Source("request_event_id", "event_id"), Source("requested_at", "time")),
    FillOnce(unless="request_event_id", order=("request_event_id",), keep=("scoring_version",)),
    event=EvaluationRequested,
    constants={"status": "QUEUED", "status_rank": STATUS_RANK["QUEUED"]},
    direct=True,
)
STATUSES_FEED = Feed(
    # Derived: one row per hash, the batch's highest-ranked status event (``sinks.rows``).
    # Paths name the status event's columns; ``rank`` is the status's rank.
    "statuses", SUBMISSIONS,
    (Source("hash", "hash"), Source("scoring_version", "scoring_version"),
     Source("status", "status"), Source("status_rank", "rank"),
     Source("notes", "note"), Source("status_at", "time")),
    _ADVANCE_STATUS,
)

FEEDS: tuple[Feed, ...] = (
    Feed(
        "miners", MINERS,
        (*_payload("hotkey", "uid", "coldkey", "block"), Source("event_id", "event_id"),
         Source("registered_at", "time")),
        KeepLatest(by=("block", "event_id")), event=MinerRegistered,
    ),
    # An operator's handover: the new hotkey holds the uid from the handover's block on...
    Feed(
        "miners_handover", MINERS,
        (*_payload("hotkey", "uid", "block"), Source("event_id", "event_id"),
         Source("registered_at", "time")),
        KeepLatest(by=("block", "event_id")), event=UidHandover,
    ),
    # ...and the hotkey that held it holds none.
    Feed(
        "miners_revoked", MINERS,
        (Source("hotkey", "payload.hotkey"), Source("uid", "payload.uid", _no_uid),
         Source("block", "payload.block"), Source("event_id", "event_id"),
         Source("registered_at", "time")),
        KeepLatest(by=("block", "event_id")), event=UidRevoked,
    ),
    # Requests before statuses: the status rows drop a QUEUED whose request the batch holds.
    REQUESTS_FEED,
    Feed(
        # Every request (the ledger's rule picks the one that holds the hash's place).
        "evaluation_requests", EVALUATION_REQUESTS,
        (*_payload("hash", "hotkey", "uid", "repo_namespace", "repo_name", "block",
                   "scoring_version", "source_event_id"),
         Source("event_id", "event_id"), Source("requested_at", "time")),
        InsertNew(), event=EvaluationRequested, direct=True,
    ),
    QUEUED_FEED,
    STATUS_EVENTS_FEED,
    STATUSES_FEED,
    Feed(
        "scores", SCORES,
        (*_payload("hash", "scoring_version", "status", "total_score", "reason", "revision",
                   "evaluator", "request_event_id", "content_hash", "rescore_of"),
         Source("timings", "payload.timings", Jsonb),
         Source("manifest", "payload.manifest", _json_model),
         Source("event_id", "event_id"), Source("computed_at", "time")),
        # The first committed score of (hash, version) in log order counts (``sinks.rows``
        # drops a batch's later ones; a later batch's conflict on the key).
        InsertNew(), event=ScoreComputed,
        # The score kept for (hash, version) makes its submission COMPLETED or FAILED; a
        # re-score's does not (it is read from ``scores`` by ``submission_standing``).
        then=Projection(
            SUBMISSIONS,
            {"hash": "hash", "scoring_version": "scoring_version", "status": "status",
             "score": "total_score", "notes": "reason", "status_at": "computed_at"},
            {"status_rank": FINAL_RANK},
            _ADVANCE_STATUS,
            unless="rescore_of",
        ),
    ),
    Feed(
        # A withdrawn request (displaced by an earlier duplicate): ``submission_standing``
        # shows its submission FAILED, without a score, whatever ``scores`` holds for it.
        "withdrawals", WITHDRAWALS,
        (*_payload("request_event_id", "hash", "hotkey", "uid", "block"),
         Source("code", "payload.code", str),
         *_payload("reason", "displaced_by", "displaced_by_hash"),
         Source("event_id", "event_id"), Source("withdrawn_at", "time")),
        InsertNew(), event=EvaluationCancelled,
    ),
    Feed(
        # Each sample of a score, named by it: a later score of the same (hash, version), which
        # ``scores`` does not keep, cannot fill in samples the kept one lacks (readers join
        # ``scores.event_id``).
        "sample_results", SAMPLE_RESULTS,
        (*_payload("hash", "scoring_version"),
         *(Source(name, f"item.{name}") for name in (
             "index", "text", "speaker", "ce", "wer", "transcription", "score", "error",
             "note", "description")),
         Source("score_event_id", "event_id")),
        InsertNew(), event=ScoreComputed, each="payload.samples",
    ),
    Feed(
        # A clip of a score, named by it and its evaluator: a replay or a retried commit
        # writes the same key.
        "sample_audio", SAMPLE_AUDIO,
        (*_payload("score_event_id", "index", "clip", "hash", "scoring_version", "evaluator",
                   "request_event_id", "sample_rate", "duration_s"),
         Source("opus", "payload.opus_b64", base64.b64decode),
         Source("mp3", "payload.mp3_b64", base64.b64decode),
         Source("event_id", "event_id")),
        InsertNew(), event=SampleAudio,
    ),
    Feed(
        "audits", AUDITS,
        (*_payload("hash", "scoring_version", "verdict", "score_event_id", "evaluator",
                   "auditor", "scored_status", "scored_total", "audited_status",
                   "audited_total", "tolerance", "reason"),
         Source("differences", "payload.differences", Jsonb),
         Source("manifest", "payload.manifest", _json_model),
         Source("event_id", "event_id"), Source("audited_at", "time")),
        InsertNew(), event=ScoreAudited,
    ),
    Feed(
        "rejections", REJECTIONS,
        (Source("code", "payload.code", str),
         *_payload("message", "source_event_id", "source_type", "hotkey", "uid", "hash",
                   "repo_namespace", "repo_name", "block"),
         Source("event_id", "event_id"), Source("time", "time")),
        InsertNew(), event=SubmissionRejected,
    ),
    Feed(
        "dead_letters", DEAD_LETTERS,
        (*_payload("topic", "partition", "offset", "error", "consumer"),
         Source("raw", "payload.raw_b64", base64.b64decode),
         Source("event_id", "event_id"), Source("time", "time")),
        InsertNew(), event=DeadLetter,
    ),
    Feed(
        # Every vector; the latest in the log is the latest (the API orders them by their
        # offset on the one-partition topic, never by the time their writer put on them).
        "weights", WEIGHTS,
        (*_payload("validator", "epoch", "block"), Source("event_id", "event_id"),
         Source("computed_at", "time"), Source("position", "log.offset")),
        InsertNew(), event=WeightsComputed,
    ),
    Feed(
        "weight_entries", WEIGHT_ENTRIES,
        (*_payload("validator", "epoch"),
         *(Source(name, f"item.{name}") for name in (
             "uid", "hotkey", "hash", "repo", "block", "status", "score", "content_hash",
             "win_rate", "invalid", "weight"))),
        InsertNew(), event=WeightsComputed, each="payload.entries",
    ),
    Feed(
        "minerboard", MINERBOARD,
        (*_payload("uid", "hash", "hotkey", "block"), Source("event_id", "event_id"),
         Source("updated_at", "time")),
        KeepLatest(by=("block", "event_id")), event=MinerboardUpdated,
    ),
    Feed(
        # Every activation; the latest in the log counts (the view ``submission_standing``
        # orders them by their offset on the one-partition topic).
        "scoring_activations", SCORING_ACTIVATIONS,
        (*_payload("scoring_version", "reason"), Source("event_id", "event_id"),
         Source("activated_at", "time"), Source("position", "log.offset")),
        InsertNew(), event=ScoringActivated,
    ),
)
"""Every feed, in the order the writer merges them."""
