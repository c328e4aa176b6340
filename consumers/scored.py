"""What needs no evaluation: every ``(hash, scoring_version)`` with a committed score, and
every withdrawn request.

An evaluator keeps this index so that a request delivered again (a re-published submission, a
worker that crashed after sending its requests, an evaluator that crashed after committing its
score but not its offset) is acknowledged without evaluating: a score is computed once per
``(hash, scoring_version)``. Only another scoring version, an operator's re-score, evaluates
again. The index is the score topic itself, read whole under ``read_committed``
(:class:`~speechstream.kafka.reader.LogReader`) when the evaluator starts, and brought up to
date before every evaluation, so the scores of the other evaluators of the group count too.
Of a score it keeps only its key, ``(hash, scoring_version)``: any committed score takes the
key (the ledger's rule, ``Ledger.has_score``). An evaluator holds a key for every score on the
topic, so the keys are kept on disk (:class:`~speechstream.diskkeys.DiskKeys`, RocksDB with
bounded memory): in a Python set, 0.34 kB each, an evaluator's memory grew with the log (60
MiB per 180,000 scores). Cancellations go into a :class:`~speechstream.ledger.Ledger`, whose
rule decides which one counts.

The same reader follows ``evaluation.cancellations``: a request withdrawn because its
submission was displaced by an earlier duplicate (``evaluation.cancelled``, naming the request's
event id) is skipped, and so is a re-score of it (its ``rescore_of``). A cancellation lives on
another topic than its request (which precedes it on ``evaluation.requests``), so an evaluator
learns of it only here, by reading that topic to its end before each evaluation.

With ``verify`` (``speechstream.trust``) a score or a cancellation whose signer may not say it
never counts: a forged ``score.computed`` cannot make the evaluator skip a request, a forged
``evaluation.cancelled`` cannot withdraw one. Its dead letter goes to ``on_dead_letter``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Protocol

from schemas.envelope import Envelope
from schemas.events import EvaluationCancelled, ScoreComputed
from speechstream.diskkeys import DiskKeys
from speechstream.kafka.reader import LogReader, OnDeadLetter
from speechstream.kafka.records import Verify
from speechstream.ledger import Ledger
from speechstream.settings import KafkaSettings

CONSUMER_NAME = "speechstream-evaluator-scored"
CATCH_UP_LIMIT_S = 30.0


class Scored(Protocol):
    """The evaluator's view of the scores already committed."""

    def start(self) -> None: ...

    def refresh(self) -> None: ...

    def add(self, hash_: str, scoring_version: str) -> None: ...

    def withdrawal(self, request_event_id: str) -> EvaluationCancelled | None: ...

    def __contains__(self, key: object) -> bool: ...

    def close(self) -> None: ...


class ScoredIndex:
    """The ``(hash, scoring_version)`` of every committed score on the score topic, and every
    cancellation on the cancellations topic by the request it withdraws."""

    def __init__(self, kafka: KafkaSettings, *, logger: logging.Logger | None = None,
                 verify: Verify | None = None,
                 on_dead_letter: OnDeadLetter | None = None,
                 directory: Path | None = None) -> None:
        self._log = logger or logging.getLogger(__name__)
        self.ledger = Ledger()
        self._reader = LogReader(
            kafka, [kafka.topics.scores, kafka.topics.cancellations], self._apply,
            name=CONSUMER_NAME, logger=self._log,
            expected={kafka.topics.scores: ScoreComputed,
                      kafka.topics.cancellations: EvaluationCancelled},
            verify=verify, on_dead_letter=on_dead_letter,
        )
        self._keys = DiskKeys("scored", directory)
        """``(hash, scoring_version)`` of every committed score read, and of each this
        evaluator committed (:meth:`add`), on disk under ``directory`` (the system's temporary
        directory unless given)."""

    def start(self) -> None:
        """Read both topics from their start, up to what is committed now."""
        started = time.monotonic()
        self._reader.start(CATCH_UP_LIMIT_S)
        self._log.info("%d scores already committed, %d requests withdrawn (read in %.1fs)",
                       len(self._keys), len(self.ledger.withdrawals),
                       time.monotonic() - started)

    def _apply(self, envelope: Envelope) -> None:
        """A score's key into the index, a cancellation into the ledger. Kept whole, a score
        of three samples took 9.1 kB in memory (1.7 kB without its samples, timings and
        manifest), its key in a set 0.34 kB; on disk, none
        (``tests/unit/consumers/test_scored.py``)."""
        p = envelope.payload
        if isinstance(p, ScoreComputed):
            self._keys.add(_key(p.hash, p.scoring_version))
        else:
            self.ledger.apply(envelope)

    def refresh(self) -> None:
        """Read what has been committed since the last refresh (bounded in time)."""
        self._reader.catch_up(CATCH_UP_LIMIT_S)

    def add(self, hash_: str, scoring_version: str) -> None:
        """Record a score this evaluator has just committed."""
        self._keys.add(_key(hash_, scoring_version))

    def withdrawal(self, request_event_id: str) -> EvaluationCancelled | None:
        """The cancellation of the request ``request_event_id``, or None."""
        return self.ledger.withdrawal(request_event_id)

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 2
                and all(isinstance(part, str) for part in key)):
            return False
        return _key(*key) in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def close(self) -> None:
        """Close the reader and remove the keys from disk."""
        self._reader.close()
        self._keys.close()


def _key(hash_: str, scoring_version: str) -> bytes:
    """A score's key on disk: its version, a NUL (in neither part), its hash."""
    return f"{scoring_version}\0{hash_}".encode()
