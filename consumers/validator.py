"""The validator: weights from the score topic at every epoch (``speechstream validator run``).

It reads, from their first offsets at every start, the miner registry (``miners``), the
evaluation requests, statuses, scores and cancellations (a request withdrawn because an
earlier duplicate displaced its submission counts as that duplicate, score or not), and the
chain's head blocks (``chain.blocks``), so
its state is rebuilt from the log, never kept aside. When the head reaches a new epoch
(``head // epoch_blocks``) and it has read everything published so far (its positions at
the brokers' high watermarks), it computes SPEC §5 (``consumers.weights``) with the head as
the cutoff block, and publishes the vector
(``weights.computed``) and each uid's current submission (``minerboard.updated``). The moving
average starts from this validator's latest vector on the ``weights`` topic, so a restart
neither forgets it nor recomputes an epoch already published.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer

from consumers.metrics import ValidatorMetrics
from consumers.weights import Candidate, compute_weights
from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.events import (
    DEFAULT_SCORING_VERSION,
    STATUS_RANK,
    ChainBlock,
    EvaluationCancelled,
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerboardUpdated,
    MinerRegistered,
    ScoreComputed,
    ScoringActivated,
    UidHandover,
    UidRevoked,
    WeightsComputed,
)
from speechstream.kafka.consumer import EventConsumer
from speechstream.kafka.producer import EventProducer
from speechstream.monitoring import Health
from speechstream.settings import KafkaSettings, ValidatorSettings

PRODUCER_NAME = "speechstream-validator"
log = logging.getLogger(__name__)


@dataclass
class ValidatorState:
    """What a validator has read of the log (pure: no Kafka), and what it makes of it."""

    scoring_version: str = DEFAULT_SCORING_VERSION
    """The version whose scores count until a ``scoring.activated`` says otherwise."""
    activated: str | None = None
    """The latest ``scoring.activated`` version read from the log (it wins over the setting)."""
    registrations: dict[str, tuple[int, str, int | None]] = field(default_factory=dict)
    """hotkey → (block, event id, uid) of its latest registration or handover (uid None: a
    handover took its uid)."""
    requests: dict[str, EvaluationRequested] = field(default_factory=dict)
    request_ids: dict[str, str] = field(default_factory=dict)
    """hash → the event id of the request kept in ``requests``."""
    withdrawn: dict[str, EvaluationCancelled] = field(default_factory=dict)
    """request event id → its cancellation (displaced by an earlier duplicate)."""
    statuses: dict[str, str] = field(default_factory=dict)
    scores: dict[tuple[str, str], ScoreComputed] = field(default_factory=dict)
    """(hash, scoring version) → its first committed score."""
    head: int | None = None

    def apply(self, envelope: Envelope) -> None:
        """Take one event into account (events of other types are ignored)."""
        p = envelope.payload
        if isinstance(p, MinerRegistered | UidHandover | UidRevoked):
            mine = (p.block, envelope.event_id, None if isinstance(p, UidRevoked) else p.uid)
            if p.hotkey not in self.registrations or self.registrations[p.hotkey] < mine:
                self.registrations[p.hotkey] = mine
        elif isinstance(p, EvaluationRequested):
            known = self.requests.get(p.hash)
            # One request a hash: the earliest block (the one that holds its place).
            if known is None or (p.block, p.source_event_id) < (known.block,
                                                                known.source_event_id):
                self.requests[p.hash] = p
                self.request_ids[p.hash] = envelope.event_id
        elif isinstance(p, EvaluationCancelled):
            self.withdrawn.setdefault(p.request_event_id, p)
        elif isinstance(p, EvaluationStatusChanged):
            known = self.statuses.get(p.hash)
            if known is None or STATUS_RANK[known] < STATUS_RANK[p.status]:
                self.statuses[p.hash] = p.status
        elif isinstance(p, ScoreComputed):
            self.scores.setdefault((p.hash, p.scoring_version), p)
        elif isinstance(p, ScoringActivated):
            self.activated = p.scoring_version
        elif isinstance(p, ChainBlock):
            self.head = p.block if self.head is None else max(self.head, p.block)

    @property
    def active_version(self) -> str:
        """The scoring version whose scores count now."""
        return self.activated or self.scoring_version

    def uids(self) -> dict[int, str]:
        """uid → the hotkey that holds it (its earliest registration, as the intake decides)."""
        holders: dict[int, tuple[int, str, str]] = {}
        for hotkey, (block, event_id, uid) in self.registrations.items():
            if uid is None:
                continue
            mine = (block, event_id, hotkey)
            if uid not in holders or mine < holders[uid]:
                holders[uid] = mine
        return {uid: hotkey for uid, (_, _, hotkey) in holders.items()}

    def candidates(self) -> list[Candidate]:
        """Every registered uid with its latest submission (by block) and how it stands."""
        latest: dict[str, EvaluationRequested] = {}
        for request in self.requests.values():
            kept = latest.get(request.hotkey)
            if kept is None or (kept.block, kept.hash) < (request.block, request.hash):
                latest[request.hotkey] = request
        out = []
        for uid, hotkey in sorted(self.uids().items()):
            request = latest.get(hotkey)
            if request is None:
                out.append(Candidate(uid=uid, hotkey=hotkey))
                continue
            score = self.scores.get((request.hash, self.active_version))
            status = score.status if score else self.statuses.get(request.hash, "QUEUED")
            withdrawn = self.withdrawn.get(self.request_ids.get(request.hash, ""))
            out.append(Candidate(
                uid=uid, hotkey=hotkey, hash=request.hash,
                repo=f"{request.repo_namespace}/{request.repo_name}", block=request.block,
                status=status, score=score.total_score if score else None,
                content_hash=score.content_hash if score else None,
                withdrawn=withdrawn.reason if withdrawn else None,
            ))
        return out


def latest_vector(kafka: KafkaSettings, validator_id: str) -> WeightsComputed | None:
    """This validator's latest vector on the ``weights`` topic (read from its start)."""
    reader = EventConsumer(
        kafka, name=f"{PRODUCER_NAME}-restore", topics=[kafka.topics.weights],
        config={"group.id": f"{PRODUCER_NAME}-restore", "enable.auto.commit": False,
                "enable.partition.eof": True},
        expected=WeightsComputed,
    ).start(from_start=True)
    found: WeightsComputed | None = None
    try:
        while not reader.drained():
            for env in reader.poll(500, 1.0).envelopes:
                p = env.payload
                if p.validator == validator_id and (found is None or found.epoch < p.epoch):
                    found = p  # type: ignore[assignment]
    finally:
        reader.close()
    return found


class Validator:
    """The validator service (module docstring). ``consumer`` replaces the confluent consumer
    and ``producer`` the event producer (tests)."""

    name = "validator"

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: ValidatorSettings,
        *,
        metrics: ValidatorMetrics,
        consumer: Consumer | None = None,
        producer: EventProducer | None = None,
    ) -> None:
        self._kafka = kafka
        self._settings = settings
        self._metrics = metrics
        t = kafka.topics
        self._consumer = EventConsumer(
            kafka, name=PRODUCER_NAME,
            topics=[t.miners, t.evaluation_requests, t.evaluation_status, t.scores,
                    t.cancellations, t.chain_blocks, t.scoring_active],
            config={"group.id": settings.group_id, "enable.auto.commit": False,
                    "enable.partition.eof": True, "isolation.level": "read_committed"},
            client=consumer, logger=log,
        )
        self._producer = producer or EventProducer(kafka)
        self.state = ValidatorState(scoring_version=settings.scoring_version)
        self.last: WeightsComputed | None = None
        """The latest vector this validator published (or found on the weights topic)."""
        self._last_poll: float | None = None

    def start(self) -> None:
        """Find the latest vector, then read the log from its start."""
        self.last = latest_vector(self._kafka, self._settings.validator_id)
        if self.last is not None:
            log.info("validator %s resumes after epoch %d (block %d)",
                     self._settings.validator_id, self.last.epoch, self.last.block)
        self._producer.start()
        self._consumer.start(from_start=True)

    def run(self, stop: threading.Event) -> None:
        """Read and run each epoch as the head reaches it, until ``stop`` is set."""
        while not stop.is_set():
            batch = self._consumer.poll(500, self._settings.poll_timeout_s)
            self._last_poll = time.monotonic()
            for env in batch.envelopes:
                self.state.apply(env)
            if batch.dead_letters or batch.kept:  # the validator writes no dead letters
                self._metrics.undecodable.inc(len(batch.dead_letters) + batch.kept)
            if self.state.head is not None:
                self._metrics.head_block.set(self.state.head)
            if self._due() and self._consumer.drained() and self._consumer.caught_up():
                self.run_epoch()

    def _due(self) -> bool:
        head = self.state.head
        if head is None:
            return False
        epoch = head // self._settings.epoch_blocks
        return self.last is None or epoch > self.last.epoch

    def run_epoch(self) -> WeightsComputed:
        """Compute and publish the vector of the head's epoch (and the minerboard entries)."""
        assert self.state.head is not None, "no head block yet"
        started = time.perf_counter()
        head, settings = self.state.head, self._settings
        previous = None if self.last is None else dict(zip(self.last.uids, self.last.weights,
                                                            strict=True))
        entries = compute_weights(self.state.candidates(), cutoff_block=head, previous=previous)
        vector = WeightsComputed.of(settings.validator_id, head // settings.epoch_blocks, head,
                                    entries)
        source = f"{vector.validator}:{vector.epoch}"
        t = self._kafka.topics
        self._producer.send(t.weights, new_envelope(
            vector, key=vector.validator, producer=PRODUCER_NAME,
            event_id=derived_event_id(source, "weights"),
        ))
        for e in entries:
            if e.hash is not None and e.hotkey is not None and e.block is not None:
                board = MinerboardUpdated(hash=e.hash, uid=e.uid, hotkey=e.hotkey, block=e.block)
                self._producer.send(t.minerboard, new_envelope(
                    board, key=str(e.uid), producer=PRODUCER_NAME,
                    event_id=derived_event_id(f"{source}:{e.uid}", "minerboard"),
                ))
        self._producer.flush()
        self.last = vector
        elapsed = time.perf_counter() - started
        self._metrics.epochs.inc()
        self._metrics.epoch_seconds.observe(elapsed)
        self._metrics.last_epoch.set(vector.epoch)
        log.info("epoch %d at block %d: %d uids, %d valid, in %.3fs", vector.epoch, head,
                 len(entries), sum(e.invalid is None for e in entries), elapsed)
        return vector

    def close(self) -> None:
        """Flush and close the producer, close the consumer."""
        try:
            self._producer.close()
        finally:
            self._consumer.close()

    def health(self) -> Health:
        """Healthy while it polls; the head and the latest epoch in the details."""
        if self._last_poll is None:
            return Health(False, "starting")
        age = time.monotonic() - self._last_poll
        healthy = age < max(30.0, 10 * self._settings.poll_timeout_s)
        return Health(healthy, "ok" if healthy else "stalled", {
            "head": self.state.head, "last_epoch": self.last.epoch if self.last else None,
            "uids": len(self.state.registrations),
        })
