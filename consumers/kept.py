"""Results an evaluator computed and has not committed yet, by request event id: a transaction
that failed retries the commit, not the evaluation.

In memory, and, with a directory, on disk as well (one JSON file a request, written
atomically): an evaluator that stops before the commit (fenced, the broker away past its
retries, killed) leaves its result to its successor, the evaluator of the same transactional id
on the same machine, which reads the request again and commits what was computed. A file that
cannot be read is ignored and removed; files older than ``max_age_s`` are removed at start.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

from pydantic import BaseModel, ValidationError

from scoring.types import ScoringResult

MAX_KEPT = 16
"""Results kept at most (a rebalance may leave several behind); the oldest go first."""
MAX_AGE_S = 7 * 24 * 3600.0


class _Kept(BaseModel):
    request_event_id: str
    hash: str
    scoring_version: str
    elapsed_s: float
    result: ScoringResult


class KeptResults:
    """Computed results by request event id, oldest first; on disk under ``directory`` when
    given."""

    def __init__(self, directory: Path | None = None, *, limit: int = MAX_KEPT,
                 max_age_s: float = MAX_AGE_S, logger: logging.Logger | None = None) -> None:
        self.directory = directory
        self.limit = limit
        self.max_age_s = max_age_s
        self._log = logger or logging.getLogger(__name__)
        self._memory: OrderedDict[str, _Kept] = OrderedDict()

    def start(self) -> int:
        """Load what a predecessor left (removing what is too old or unreadable); how many."""
        if self.directory is None:
            return 0
        self.directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        files = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for path in files:
            kept = self._read(path)
            if kept is None or now - path.stat().st_mtime > self.max_age_s:
                path.unlink(missing_ok=True)
                continue
            self._memory[kept.request_event_id] = kept
        self._trim()
        if self._memory:
            self._log.info("%d computed results left uncommitted by a predecessor: they are "
                           "committed when their requests are read again", len(self._memory))
        return len(self._memory)

    def _read(self, path: Path) -> _Kept | None:
        try:
            return _Kept.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            self._log.warning("ignoring kept result %s: %s", path.name, exc)
            return None

    def _path(self, request_event_id: str) -> Path:
        assert self.directory is not None
        # An event id is a uuid; anything else is hashed into a safe file name.
        name = request_event_id if request_event_id.replace("-", "").isalnum() else (
            hashlib.sha256(request_event_id.encode()).hexdigest())
        return self.directory / f"{name}.json"

    def get(self, request_event_id: str, hash_: str,
            scoring_version: str) -> tuple[ScoringResult, float] | None:
        """The result kept for this request (its hash and version must match), and the
        evaluation's wall time."""
        kept = self._memory.get(request_event_id)
        if kept is None or (kept.hash, kept.scoring_version) != (hash_, scoring_version):
            return None
        return kept.result, kept.elapsed_s

    def put(self, request_event_id: str, hash_: str, scoring_version: str,
            result: ScoringResult, elapsed_s: float) -> None:
        """Keep a computed result until :meth:`drop`."""
        kept = _Kept(request_event_id=request_event_id, hash=hash_,
                     scoring_version=scoring_version, elapsed_s=elapsed_s, result=result)
        self._memory[request_event_id] = kept
        self._memory.move_to_end(request_event_id)
        if self.directory is not None:
            try:
                self._write(self._path(request_event_id), kept.model_dump_json().encode())
            except OSError as exc:  # kept in memory all the same
                self._log.warning("cannot keep the result of %s on disk: %s", hash_, exc)
        self._trim()

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kept-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def drop(self, request_event_id: str) -> None:
        """Forget a result: committed, or the request needs it no more."""
        self._memory.pop(request_event_id, None)
        if self.directory is not None:
            self._path(request_event_id).unlink(missing_ok=True)

    def _trim(self) -> None:
        while len(self._memory) > self.limit:
            oldest = next(iter(self._memory))
            self.drop(oldest)

    def __len__(self) -> int:
        return len(self._memory)
