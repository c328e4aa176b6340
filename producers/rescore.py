"""Re-scoring: accepted evaluation requests re-emitted from the log for another scoring version.

The log is the source of truth: the accepted requests are read from ``evaluation.requests``
(never from PostgreSQL), one per hash (the earliest block, the one that holds its place, as
the validators count it), leaving out the requests withdrawn on ``evaluation.cancellations``
(a displaced duplicate's). Each is re-emitted on the evaluators' lower-priority lane
(``evaluation.rescores``) for the new version, with an event id derived from the request's id
and the version, and ``rescore_of`` naming the request. What the lane already holds for that
version is not queued again, so running the same re-score twice queues nothing twice; an
evaluator also skips a ``(hash, version)`` that has a committed score.

The switch to the new version is a separate step (:func:`activation`), taken once the
re-scores are done: until then the leaderboard, the API and the weights use the active one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from producers.miner import publish as publish_events
from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.events import (
    EvaluationCancelled,
    EvaluationRequested,
    ScoreComputed,
    ScoringActivated,
)
from speechstream.exceptions import SpeechstreamError
from speechstream.kafka.consumer import Batch, EventConsumer
from speechstream.kafka.producer import EventProducer
from speechstream.settings import KafkaSettings

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


def read_all(kafka: KafkaSettings, topic: str, expected: type, *, name: str,
             limit_s: float = READ_LIMIT_S) -> list[Envelope]:
    """Every decodable envelope of ``topic`` from its first offset to its end now (no group)."""
    consumer = EventConsumer(
        kafka, name=name, topics=[topic],
        config={"group.id": name, "enable.auto.commit": False,
                "isolation.level": "read_committed"},
        expected=expected, logger=log,
    )
    found: list[Envelope] = []

    def take(batch: Batch) -> None:
        found.extend(batch.envelopes)

    consumer.start(from_start=True)
    try:
        if not consumer.read_to_end(take, limit_s):
            raise RescoreError(f"could not read {topic} to its end within {limit_s:.0f}s")
    finally:
        consumer.close()
    return found


def accepted_requests(envelopes: Iterable[Envelope],
                      withdrawn: Collection[str] = ()) -> dict[str, Envelope]:
    """One request per hash: the earliest (block, submission event id), as the validators
    count it; requests ``withdrawn`` (a displaced duplicate's, by event id) are left out."""
    kept: dict[str, Envelope] = {}
    for env in envelopes:
        p = env.payload
        if (not isinstance(p, EvaluationRequested) or p.rescore_of is not None
                or env.event_id in withdrawn):
            continue
        known = kept.get(p.hash)
        if known is None or (p.block, p.source_event_id) < (known.payload.block,
                                                            known.payload.source_event_id):
            kept[p.hash] = env
    return kept


def read_accepted(kafka: KafkaSettings) -> dict[str, Envelope]:
    """hash → its accepted request, read from the log (withdrawn requests left out)."""
    withdrawn = {
        env.payload.request_event_id
        for env in read_all(kafka, kafka.topics.cancellations, EvaluationCancelled,
                            name=f"{PRODUCER_NAME}-withdrawn")
    }
    return accepted_requests(read_all(kafka, kafka.topics.evaluation_requests,
                                      EvaluationRequested, name=f"{PRODUCER_NAME}-read"),
                             withdrawn)


def rescore_envelope(request_env: Envelope, version: str) -> Envelope:
    """The re-score of one accepted request for ``version``: its id derived from both."""
    request = request_env.payload
    assert isinstance(request, EvaluationRequested)
    event = request.model_copy(update={"scoring_version": version,
                                       "rescore_of": request_env.event_id})
    return new_envelope(event, key=request.hash, producer=PRODUCER_NAME,
                        event_id=derived_event_id(request_env.event_id, f"rescore:{version}"))


def plan(kafka: KafkaSettings, version: str, selection: Selection) -> Plan:
    """Read the log and work out what to queue; :class:`RescoreError` when a named hash or
    hotkey has no accepted request."""
    requests = read_accepted(kafka)
    selected = [env for env in requests.values() if selection.matches(env.payload)]
    missing = [h for h in selection.hashes if h not in requests]
    if missing:
        raise RescoreError(f"no accepted request for hash {', '.join(missing)}")
    if selection.hotkey is not None and not selected:
        raise RescoreError(f"no accepted request of hotkey {selection.hotkey}"
                           + (f" at block ≥ {selection.since_block}"
                              if selection.since_block is not None else ""))
    on_lane = {
        env.event_id for env in read_all(kafka, kafka.topics.rescores, EvaluationRequested,
                                         name=f"{PRODUCER_NAME}-lane")
    }
    queued = [out for out in (rescore_envelope(env, version) for env in selected)
              if out.event_id not in on_lane]
    selected.sort(key=lambda env: (env.payload.block, env.payload.hash))
    queued.sort(key=lambda env: (env.payload.block, env.payload.hash))
    return Plan(version, selected, queued)


def publish(kafka: KafkaSettings, queued: list[Envelope],
            on_sent: Callable[[int], None] | None = None) -> int:
    """Publish the re-scores on the lane (idempotent producer, every delivery confirmed);
    ``on_sent`` is told how many were handed to the client each time."""
    with EventProducer(kafka) as producer:
        for n, env in enumerate(queued, 1):
            producer.send(kafka.topics.rescores, env)
            if on_sent is not None and (n % 100 == 0 or n == len(queued)):
                on_sent(n)
        producer.flush(max(30.0, len(queued) / 100))
        return producer.delivered


class ScoreWatch:
    """Follows the scores topic: which of ``hashes`` have a committed score of ``version``."""

    def __init__(self, kafka: KafkaSettings, version: str, hashes: set[str]) -> None:
        self.version, self.pending = version, set(hashes)
        self.completed = self.failed = 0
        self._consumer = EventConsumer(
            kafka, name=f"{PRODUCER_NAME}-watch", topics=[kafka.topics.scores],
            config={"group.id": f"{PRODUCER_NAME}-watch", "enable.auto.commit": False,
                    "isolation.level": "read_committed"},
            expected=ScoreComputed, logger=log,
        )
        self._consumer.start(from_start=True)

    @property
    def scored(self) -> int:
        return self.completed + self.failed

    def poll(self, timeout_s: float) -> int:
        """Read what has arrived (waiting up to ``timeout_s``); how many are still pending."""
        batch = self._consumer.poll(1000, timeout_s)
        for env in batch.envelopes:
            p = env.payload
            if p.scoring_version == self.version and p.hash in self.pending:
                self.pending.discard(p.hash)
                if p.status == "COMPLETED":
                    self.completed += 1
                else:
                    self.failed += 1
        return len(self.pending)

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
        self._consumer.close()


def coverage(kafka: KafkaSettings) -> tuple[str | None, int, dict[str, dict[str, int]]]:
    """From the log: the activated version (None before any), how many submissions are
    accepted, and per scoring version how many of them have a COMPLETED or FAILED score."""
    activations = read_all(kafka, kafka.topics.scoring_active, ScoringActivated,
                           name=f"{PRODUCER_NAME}-active")
    active = activations[-1].payload.scoring_version if activations else None
    accepted = read_accepted(kafka)
    seen: set[tuple[str, str]] = set()
    per: dict[str, dict[str, int]] = {}
    for env in read_all(kafka, kafka.topics.scores, ScoreComputed,
                        name=f"{PRODUCER_NAME}-scores"):
        p = env.payload
        if p.hash in accepted and (p.hash, p.scoring_version) not in seen:
            seen.add((p.hash, p.scoring_version))
            counts = per.setdefault(p.scoring_version, {"COMPLETED": 0, "FAILED": 0})
            counts[p.status] += 1
    return active, len(accepted), per


def activate(kafka: KafkaSettings, version: str, reason: str | None = None) -> None:
    """Publish the activation of ``version`` on ``scoring.active`` and wait for the broker."""
    publish_events(kafka, kafka.topics.scoring_active, [activation(version, reason)])


def activation(version: str, reason: str | None = None) -> Envelope:
    """The ``scoring.activated`` event that makes ``version`` the one that counts."""
    return new_envelope(ScoringActivated(scoring_version=version, reason=reason),
                        key="active", producer=PRODUCER_NAME)
