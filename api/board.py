"""The leaderboard pages' read side: what PostgreSQL says of the minerboard, one submission with
its samples and clips, one miner's submissions and the weights of the last epochs. Every query
is parameterized; nothing here is shaped for the original clients (``api.store`` is)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

Fetch = Callable[[str, dict[str, Any]], list[dict[str, Any]]]
"""Runs a parameterized query, rows as dicts (``PostgresStore.rows``)."""
AudioFormat = Literal["opus", "mp3"]
CLIPS = ("generated", "reference")

# The minerboard's entries, with the latest vector's win rate and weight of each uid.
_BOARD = """
WITH latest AS (
    SELECT validator, epoch FROM weights
     ORDER BY position DESC NULLS LAST, computed_at DESC, epoch DESC LIMIT 1
)
SELECT m.uid, m.hotkey, m.hash, m.block, s.repo_namespace || '/' || s.repo_name AS repo,
       coalesce(s.status, CASE WHEN EXISTS (SELECT 1 FROM rejections r WHERE r.hash = m.hash)
                               THEN 'FAILED' END) AS status,
       s.score, s.scoring_version, s.notes, e.win_rate, e.weight,
       (SELECT epoch FROM latest) AS epoch
  FROM minerboard m
  LEFT JOIN submission_standing s ON s.hash = m.hash
  LEFT JOIN weight_entries e ON e.uid = m.uid
        AND (e.validator, e.epoch) = (SELECT validator, epoch FROM latest)
 ORDER BY s.score DESC NULLS LAST, m.uid
"""
_SUBMISSION = """
SELECT s.hash, s.uid, s.hotkey, s.repo_namespace || '/' || s.repo_name AS repo, s.block,
       s.status, s.score, s.notes, s.scoring_version, s.manifest, s.content_hash,
       sc.event_id AS score_event_id, sc.evaluator, sc.computed_at
  FROM submission_standing s
  -- The score the standing counts (answering a request of its hash; none once withdrawn).
  LEFT JOIN scores sc ON sc.hash = s.hash AND sc.scoring_version = s.scoring_version
        AND s.withdrawn IS NULL
        AND EXISTS (SELECT 1 FROM evaluation_requests q
                     WHERE q.hash = sc.hash AND q.event_id IN (sc.request_event_id, sc.rescore_of))
 WHERE s.hash = %(hash)s
"""
_REJECTED = """
SELECT r.hash, r.uid, r.hotkey, r.repo_namespace || '/' || r.repo_name AS repo, r.block,
       'REJECTED' AS status, NULL::double precision AS score, r.code || ': ' || r.message AS notes,
       NULL AS scoring_version, NULL::jsonb AS manifest, NULL AS content_hash,
       NULL AS score_event_id, NULL AS evaluator, NULL::timestamptz AS computed_at
  FROM rejections r WHERE r.hash = %(hash)s ORDER BY r.written_at DESC LIMIT 1
"""
_SAMPLES = """
SELECT index, text, speaker, description, ce, wer, transcription, score, error, note
  FROM sample_results WHERE score_event_id = %(score)s ORDER BY index
"""
# The clips of the score shown, from its own evaluator (no other can name its score).
_CLIPS = """
SELECT index, clip, duration_s, sample_rate, purged_at, octet_length(opus) AS opus_bytes,
       octet_length(mp3) AS mp3_bytes
  FROM sample_audio WHERE score_event_id = %(score)s AND evaluator = %(evaluator)s
"""
_AUDIO = """
SELECT a.opus, a.mp3, a.purged_at FROM sample_audio a
  JOIN scores s ON s.event_id = a.score_event_id AND s.evaluator = a.evaluator
 WHERE a.score_event_id = %(score)s AND a.index = %(index)s AND a.clip = %(clip)s
"""
_MINER = """
SELECT * FROM (
    SELECT s.hash, s.hotkey, s.repo_namespace || '/' || s.repo_name AS repo, s.block, s.status,
           s.score, s.notes, s.updated_at
      FROM submission_standing s WHERE s.uid = %(uid)s
    UNION ALL
    SELECT r.hash, r.hotkey, r.repo_namespace || '/' || r.repo_name, r.block, 'REJECTED', NULL,
           r.code || ': ' || r.message, r.written_at
      FROM rejections r WHERE r.uid = %(uid)s AND r.source_type <> 'miner.registered'
) rows ORDER BY block DESC NULLS LAST, updated_at DESC
"""
_MINER_HOTKEY = "SELECT hotkey FROM miners WHERE uid = %(uid)s ORDER BY hotkey LIMIT 1"
# The last epochs' vectors of the latest vector's validator, by their place in the log.
_EPOCHS = """
WITH latest AS (
    SELECT validator FROM weights
     ORDER BY position DESC NULLS LAST, computed_at DESC, epoch DESC LIMIT 1
), epochs AS (
    SELECT w.validator, w.epoch, w.block FROM weights w JOIN latest USING (validator)
     ORDER BY w.position DESC NULLS LAST, w.computed_at DESC, w.epoch DESC LIMIT %(epochs)s
)
SELECT e.validator, e.epoch, e.block, x.uid, x.weight, x.win_rate
  FROM epochs e JOIN weight_entries x ON x.validator = e.validator AND x.epoch = e.epoch
 ORDER BY e.epoch, x.uid
"""


class BoardRow(BaseModel):
    """One uid on the leaderboard page."""

    rank: int
    uid: int
    hotkey: str
    hash: str
    block: int
    repo: str | None
    status: str | None
    score: float | None
    scoring_version: str | None
    notes: str | None
    win_rate: float | None
    weight: float | None
    epoch: int | None


class Clip(BaseModel):
    """A clip of a sample as the page shows it: kept (its formats and duration) or purged."""

    clip: str
    duration_s: float
    sample_rate: int
    purged: bool
    formats: list[AudioFormat]
    bytes: int


class SampleView(BaseModel):
    """One sample of a submission's score, with its clips."""

    index: int
    text: str
    speaker: str | None
    description: str | None
    ce: float | None
    wer: float | None
    transcription: str | None
    score: float | None
    error: str | None
    note: str | None
    clips: dict[str, Clip] = {}


class SubmissionView(BaseModel):
    """A submission and the score that stands for it, with its samples."""

    hash: str
    uid: int | None
    hotkey: str | None
    repo: str | None
    block: int | None
    status: str
    score: float | None
    notes: str | None
    scoring_version: str | None
    manifest: dict[str, Any] | None
    content_hash: str | None
    score_event_id: str | None
    evaluator: str | None
    computed_at: datetime | None
    samples: list[SampleView] = []

    @property
    def audio_bytes(self) -> int:
        """Bytes of the clips kept for it (both formats)."""
        return sum(c.bytes for s in self.samples for c in s.clips.values())


class MinerSubmission(BaseModel):
    """One submission of a miner's page."""

    hash: str | None
    hotkey: str | None
    repo: str | None
    block: int | None
    status: str
    score: float | None
    notes: str | None
    updated_at: datetime


class MinerView(BaseModel):
    """A uid's submissions, newest first."""

    uid: int
    hotkey: str | None
    submissions: list[MinerSubmission]


@dataclass(frozen=True)
class EpochWeights:
    """The last epochs' vectors of one validator: ``weights[uid][i]`` in ``epochs[i]``."""

    validator: str | None
    epochs: list[int]
    blocks: list[int]
    weights: dict[int, list[float]]
    win_rates: dict[int, list[float | None]]


@dataclass(frozen=True)
class Audio:
    """A clip's encoding; ``data`` is None when it was purged."""

    data: bytes | None
    purged: bool


class Board:
    """The pages' queries over ``fetch``."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch

    def rows(self) -> list[BoardRow]:
        """The minerboard, best score first, ranked."""
        return [BoardRow(rank=i, **row) for i, row in enumerate(self._fetch(_BOARD, {}), 1)]

    def submission(self, hash_: str) -> SubmissionView | None:
        """The submission ``hash_`` (a rejected one has no samples); None when unknown."""
        found = self._fetch(_SUBMISSION, {"hash": hash_}) or self._fetch(_REJECTED,
                                                                         {"hash": hash_})
        if not found:
            return None
        view = SubmissionView(**found[0])
        if view.score_event_id is None:
            return view
        clips: dict[int, dict[str, Clip]] = {}
        for c in self._fetch(_CLIPS, {"score": view.score_event_id,
                                      "evaluator": view.evaluator}):
            purged = c["purged_at"] is not None
            formats: list[AudioFormat] = [] if purged else [
                f for f in ("opus", "mp3") if c[f"{f}_bytes"]]
            clips.setdefault(c["index"], {})[c["clip"]] = Clip(
                clip=c["clip"], duration_s=c["duration_s"], sample_rate=c["sample_rate"],
                purged=purged, formats=formats,
                bytes=(c["opus_bytes"] or 0) + (c["mp3_bytes"] or 0))
        samples = [SampleView(**s, clips=clips.get(s["index"], {}))
                   for s in self._fetch(_SAMPLES, {"score": view.score_event_id})]
        return view.model_copy(update={"samples": samples})

    def audio(self, score_event_id: str, index: int, clip: str,
              fmt: AudioFormat) -> Audio | None:
        """One clip's encoding; None when there is no such clip."""
        found = self._fetch(_AUDIO, {"score": score_event_id, "index": index, "clip": clip})
        if not found:
            return None
        row = found[0]
        if row["purged_at"] is not None:
            return Audio(None, True)
        data = row[fmt]
        return Audio(bytes(data), False) if data is not None else None

    def miner(self, uid: int) -> MinerView | None:
        """The uid's submissions; None when the uid has neither a registration nor any."""
        rows = [MinerSubmission(**r) for r in self._fetch(_MINER, {"uid": uid})]
        hotkeys = self._fetch(_MINER_HOTKEY, {"uid": uid})
        if not rows and not hotkeys:
            return None
        hotkey = hotkeys[0]["hotkey"] if hotkeys else rows[0].hotkey
        return MinerView(uid=uid, hotkey=hotkey, submissions=rows)

    def epochs(self, count: int) -> EpochWeights:
        """The last ``count`` epochs' weights of the latest vector's validator."""
        rows = self._fetch(_EPOCHS, {"epochs": count})
        epochs = sorted({r["epoch"] for r in rows})
        blocks = {r["epoch"]: r["block"] for r in rows}
        at = {e: i for i, e in enumerate(epochs)}
        weights: dict[int, list[float]] = {}
        wins: dict[int, list[float | None]] = {}
        for r in rows:
            weights.setdefault(r["uid"], [0.0] * len(epochs))[at[r["epoch"]]] = r["weight"]
            wins.setdefault(r["uid"], [None] * len(epochs))[at[r["epoch"]]] = r["win_rate"]
        return EpochWeights(rows[0]["validator"] if rows else None, epochs,
                            [blocks[e] for e in epochs], weights, wins)
