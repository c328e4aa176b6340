"""Re-scoring: accepted evaluation requests re-emitted from the log for another scoring version.

The log is the source of truth: the accepted requests are read from ``evaluation.requests``
and ``evaluation.cancellations`` (never from PostgreSQL) into a
:class:`~speechstream.ledger.Ledger`: one per hash, by the ledger's rule (the earliest block
holds its place), leaving out the withdrawn ones (a displaced duplicate's). Each is
re-emitted on the evaluators' lower-priority lane (``evaluation.rescores``) for the new
version, with an event id derived from the request's id and the version, and ``rescore_of``
naming the request. What the lane already holds for that
version is not queued again, so running the same re-score twice queues nothing twice; an
evaluator also skips a ``(hash, version)`` that has a committed score.

The switch to the new version is a separate step (:func:`activation`), taken once the
re-scores are done: until then the leaderboard, the API and the weights use the active one.

Every read takes ``verify`` (``speechstream.trust``): a forged request, cancellation or score
does not decide what is re-scored or counted. Every write takes ``signer``, the operator's
root key: the re-scores and the activation are the operator's to say.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.events import EvaluationRequested, ScoreComputed, ScoringActivated
from speechstream.exceptions import ConsumeError, SpeechstreamError
from speechstream.kafka.producer import EventProducer
from speechstream.kafka.reader import LogReader, read_log
from speechstream.kafka.records import Verify
from speechstream.ledger import Ledger, Request
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer

PRODUCER_NAME = "speechstream-rescore"
READ_LIMIT_S = 600.0
log = logging.getLogger(__name__)


class RescoreError(SpeechstreamError):
    """A re-score that cannot be queued as asked (nothing was published)."""


@dataclass(frozen=True)
class Selection:
    """Which accepted requests to re-score: all, some hashes, one hotkey's, or those from a
    block on (the filters given all apply)."""

    all: bool = False
    hashes: tuple[str, ...] = ()
    hotkey: str | None = None
    since_block: int | None = None

    def matches(self, request: EvaluationRequested) -> bool:
        """Whether ``request`` is selected."""
        if self.hashes and request.hash not in self.hashes:
            return False
        if self.hotkey is not None and request.hotkey != self.hotkey:
            return False
        return self.since_block is None or request.block >= self.since_block

    def describe(self) -> str:
        """The selection in words."""
        parts = []
        if self.hashes:
            parts.append(f"hash {', '.join(self.hashes)}")
        if self.hotkey is not None:
            parts.append(f"hotkey {self.hotkey[:16]}…")
        if self.since_block is not None:
            parts.append(f"blocks ≥ {self.since_block}")
        return " and ".join(parts) or "every accepted request"


@dataclass
class Plan:
    """What a re-score would queue: the selected requests not on the lane for ``version``."""

    version: str
    selected: list[Envelope]
    """The original request of each selected hash."""
    queued: list[Envelope] = field(default_factory=list)
    """The re-scores to publish (the rest are on the lane already)."""

    @property
    def already_queued(self) -> int:
        return len(self.selected) - len(self.queued)

    @property
    def hashes(self) -> set[str]:
        return {env.payload.hash for env in self.selected}


def read_ledger(kafka: KafkaSettings, topics: list[str], *, name: str,
                limit_s: float = READ_LIMIT_S, verify: Verify | None = None) -> Ledger:
    """A ledger of ``topics`` read whole, now, of the records ``verify`` lets count
    (:class:`RescoreError` when that is too slow)."""
    ledger = Ledger()
    try:
        read_log(kafka, topics, ledger.apply, name=name, limit_s=limit_s, logger=log,
                 verify=verify)
    except ConsumeError as exc:
        raise RescoreError(str(exc)) from exc
    return ledger


def read_accepted(kafka: KafkaSettings, verify: Verify | None = None) -> dict[str, Envelope]:
    """hash → its accepted request's envelope, read from the log (the ledger's rule; withdrawn
    requests left out)."""
    t = kafka.topics
    ledger = read_ledger(kafka, [t.evaluation_requests, t.cancellations],
                         name=f"{PRODUCER_NAME}-read", verify=verify)
    return {hash_: _envelope(request)
            for hash_, request in ledger.accepted_requests().items()}


def _envelope(request: Request) -> Envelope:
    """The accepted request as the envelope it came in (its id is what re-scores name)."""
    return new_envelope(request.payload, key=request.payload.hash, producer=PRODUCER_NAME,
                        event_id=request.event_id)


def rescore_envelope(request_env: Envelope, version: str) -> Envelope:
    """The re-score of one accepted request for ``version``: its id derived from both."""
    request = request_env.payload
    assert isinstance(request, EvaluationRequested)
    event = request.model_copy(update={"scoring_version": version,
                                       "rescore_of": request_env.event_id})
    return new_envelope(event, key=request.hash, producer=PRODUCER_NAME,
                        event_id=derived_event_id(request_env.event_id, f"rescore:{version}"))


def plan(kafka: KafkaSettings, version: str, selection: Selection,
         verify: Verify | None = None) -> Plan:
    """Read the log and work out what to queue; :class:`RescoreError` when a named hash or
    hotkey has no accepted request."""
    requests = read_accepted(kafka, verify)
    selected = [env for env in requests.values() if selection.matches(env.payload)]
    missing = [h for h in selection.hashes if h not in requests]
    if missing:
        raise RescoreError(f"no accepted request for hash {', '.join(missing)}")
    if selection.hotkey is not None and not selected:
        raise RescoreError(f"no accepted request of hotkey {selection.hotkey}"
                           + (f" at block ≥ {selection.since_block}"
                              if selection.since_block is not None else ""))
    on_lane = set(read_ledger(kafka, [kafka.topics.rescores],
                              name=f"{PRODUCER_NAME}-lane", verify=verify).rescores)
    queued = [out for out in (rescore_envelope(env, version) for env in selected)
              if out.event_id not in on_lane]
    selected.sort(key=lambda env: (env.payload.block, env.payload.hash))
    queued.sort(key=lambda env: (env.payload.block, env.payload.hash))
    return Plan(version, selected, queued)


def publish(kafka: KafkaSettings, queued: list[Envelope],
            on_sent: Callable[[int], None] | None = None, *,
            signer: Signer | None = None) -> int:
    """Publish the re-scores on the lane (idempotent producer, every delivery confirmed),
    each signed by ``signer`` when given; ``on_sent`` is told how many were handed to the
    client each time."""
    with EventProducer(kafka, signer=signer) as producer:
        for n, env in enumerate(queued, 1):
            producer.send(kafka.topics.rescores, env)
            if on_sent is not None and (n % 100 == 0 or n == len(queued)):
                on_sent(n)
        producer.flush(max(30.0, len(queued) / 100))
        return producer.delivered


class ScoreWatch:
    """Follows the scores topic: which of ``hashes`` have a committed score of ``version``."""

    def __init__(self, kafka: KafkaSettings, version: str, hashes: set[str],
                 verify: Verify | None = None) -> None:
        self.version, self.pending = version, set(hashes)
        self.completed = self.failed = 0
        self._reader = LogReader(kafka, [kafka.topics.scores], self._take,
                                 name=f"{PRODUCER_NAME}-watch", expected=ScoreComputed,
                                 logger=log, verify=verify)
        self._reader.consumer.start(from_start=True)

    @property
    def scored(self) -> int:
        return self.completed + self.failed

    def poll(self, timeout_s: float) -> int:
        """Read what has arrived (waiting up to ``timeout_s``); how many are still pending."""
        self._reader.read_new(timeout_s)
        return len(self.pending)

    def _take(self, env: Envelope) -> None:
        p = env.payload
        if (isinstance(p, ScoreComputed) and p.scoring_version == self.version
                and p.hash in self.pending):
            self.pending.discard(p.hash)
            if p.status == "COMPLETED":
                self.completed += 1
            else:
                self.failed += 1

    def wait(self, timeout_s: float, on_progress: Callable[[ScoreWatch], None]) -> bool:
        """Follow until nothing is pending or ``timeout_s`` passed; whether all were scored."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            before = self.scored
            self.poll(0.5)
            if self.scored != before:
                on_progress(self)
        return not self.pending

    def close(self) -> None:
        self._reader.close()


def coverage(kafka: KafkaSettings, verify: Verify | None = None,
             ) -> tuple[str | None, int, dict[str, dict[str, int]]]:
    """From the log: the activated version (None before any), how many submissions are
    accepted, and per scoring version how many of them have a COMPLETED or FAILED score
    (the ledger's: the first committed of each hash and version, when it answers a request)."""
    t = kafka.topics
    ledger = read_ledger(kafka, [t.scoring_active, t.evaluation_requests, t.cancellations,
                                 t.scores], name=f"{PRODUCER_NAME}-coverage", verify=verify)
    accepted = ledger.accepted_requests()
    per: dict[str, dict[str, int]] = {}
    for (hash_, version), (_, score) in ledger.scores.items():
        if hash_ in accepted and ledger.answers_a_request(score):
            counts = per.setdefault(version, {"COMPLETED": 0, "FAILED": 0})
            counts[score.status] += 1
    return ledger.activated, len(accepted), per


def activate(kafka: KafkaSettings, version: str, reason: str | None = None, *,
             signer: Signer | None = None) -> Envelope:
    """Publish the activation of ``version`` on ``scoring.active``, signed by ``signer``
    when given, and wait for the broker; the envelope as sent."""
    envelope = activation(version, reason)
    if signer is not None:
        envelope = signer.sign(envelope)
    with EventProducer(kafka) as producer:
        producer.send(kafka.topics.scoring_active, envelope)
        producer.flush()
    return envelope


def activation(version: str, reason: str | None = None) -> Envelope:
    """The ``scoring.activated`` event that makes ``version`` the one that counts."""
    return new_envelope(ScoringActivated(scoring_version=version, reason=reason),
                        key="active", producer=PRODUCER_NAME)
