"""Random logs for the ledger's differential test: what the topics could hold, partition by
partition, and the orders in which readers could be handed it.

A log has registrations, handovers and revocations; evaluation requests with duplicates by
hash and by repo, a later block published before an earlier one, the same request published
twice; withdrawals (one request withdrawn twice, by two displacements); PRECHECK and RUNNING
statuses of several scoring versions, re-scores' among them, some seen late; scores of two
versions, two scores of one (hash, version), re-scores' scores; activations. Each event goes
to its topic's partition by its key, as a producer would put it, so the order within a
partition is the order of the log, and readers get the partitions interleaved at random.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from schemas.envelope import Envelope, new_envelope
from schemas.events import (
    EvaluationCancelled,
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerRegistered,
    ScoreComputed,
    ScoringActivated,
    UidHandover,
    UidRevoked,
)
from schemas.fields import SCORING_VERSIONS, RejectionCode
from schemas.topics import ALL_TOPICS

VERSIONS = ("v1", "v2", "v3")
PARTITIONS = {spec.name: spec.partitions for spec in ALL_TOPICS}
NOTES = (None, "checking the repo", "on cuda:0", "on cpu", "retry 2")


@dataclass
class Log:
    """The records of each (topic, partition), in log order."""

    partitions: dict[tuple[str, int], list[Envelope]] = field(default_factory=dict)

    def append(self, topic: str, key: str | None, env: Envelope) -> None:
        count = PARTITIONS[topic]
        partition = 0 if key is None or count == 1 else hash_key(key) % count
        self.partitions.setdefault((topic, partition), []).append(env)

    @property
    def size(self) -> int:
        return sum(len(records) for records in self.partitions.values())

    def interleaved(self, rng: random.Random) -> list[tuple[Envelope, int]]:
        """Every record once, with its offset: the partitions merged in a random order that
        keeps each partition's own."""
        cursors = {tp: 0 for tp in self.partitions}
        out = []
        while cursors:
            tp = rng.choice(sorted(cursors))
            records = self.partitions[tp]
            take = rng.randint(1, 4)
            start = cursors[tp]
            for offset in range(start, min(start + take, len(records))):
                out.append((records[offset], offset))
            cursors[tp] = start + take
            if cursors[tp] >= len(records):
                del cursors[tp]
        return out

    def delivered(self, rng: random.Random) -> Iterator[list[tuple[Envelope, int]]]:
        """Batches as a sink consumer could get them: interleaved, cut at random, and now and
        then a partition read again from an earlier offset (a restart before its commit)."""
        cursors = {tp: 0 for tp in self.partitions}
        batch: list[tuple[Envelope, int]] = []
        while cursors:
            tp = rng.choice(sorted(cursors))
            records = self.partitions[tp]
            start = cursors[tp]
            take = rng.randint(1, 6)
            for offset in range(start, min(start + take, len(records))):
                batch.append((records[offset], offset))
            cursors[tp] = start + take
            if rng.random() < 0.05 and start > 0:
                cursors[tp] = rng.randint(0, start)  # read again from there
            if cursors[tp] >= len(records):
                del cursors[tp]
            if rng.random() < 0.15:
                yield batch
                batch = []
        if batch:
            yield batch


def hash_key(key: str) -> int:
    """A stable partitioner for the test (any stable one keeps per-key order)."""
    return int(uuid.uuid5(uuid.NAMESPACE_OID, key).hex[:8], 16)


def _hotkey(n: int) -> str:
    return f"{n:02x}" * 32


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def random_log(seed: int, size: int = 200) -> Log:
    """A log of about ``size`` records drawn from ``seed``."""
    rng = random.Random(seed)
    log = Log()
    hotkeys = [_hotkey(n + 1) for n in range(rng.randint(2, 6))]
    repos = [f"repo{n}" for n in range(rng.randint(2, 6))]
    requests: list[tuple[str, EvaluationRequested]] = []  # (event id, request)
    block = 0

    def env(payload, key: str | None, event_id: str | None = None) -> Envelope:  # noqa: ANN001
        return new_envelope(payload, key=key, producer="ledger-test",
                            event_id=event_id or _id(rng))

    def register() -> None:
        hotkey, uid = rng.choice(hotkeys), rng.randrange(6)
        log.append("miners", hotkey, env(MinerRegistered(
            hotkey=hotkey, uid=uid, block=rng.randint(0, block + 10), signature="ab" * 64),
            hotkey))

    def hand_over() -> None:
        old, new = rng.sample(hotkeys, 2)
        uid, at, source = rng.randrange(6), rng.randint(0, block + 10), _id(rng)
        log.append("miners", new, env(UidHandover(uid=uid, hotkey=new, previous=old, block=at,
                                                  source_event_id=source), new))
        log.append("miners", old, env(UidRevoked(hotkey=old, uid=uid, to=new, block=at,
                                                 source_event_id=source), old))

    def request() -> None:
        if requests and rng.random() < 0.25:
            # Another request of a known hash: a block earlier or later (a displacement at
            # intake), or the very same request published again.
            event_id, known = rng.choice(requests)
            if rng.random() < 0.3:
                log.append("evaluation.requests", known.hash,
                           env(known, known.hash, event_id))
                return
            payload = known.model_copy(update={
                "block": max(0, known.block + rng.randint(-50, 50)),
                "source_event_id": _id(rng),
                "scoring_version": rng.choice(VERSIONS[:2]),
            })
        else:
            hotkey = rng.choice(hotkeys)
            payload = EvaluationRequested(
                hash=str(rng.randrange(10**6, 10**7)), hotkey=hotkey,
                uid=rng.randrange(6), repo_namespace="ns", repo_name=rng.choice(repos),
                block=rng.randint(max(0, block - 30), block + 30),
                scoring_version=rng.choice(VERSIONS[:2]), source_event_id=_id(rng),
            )
        event = env(payload, payload.hash)
        requests.append((event.event_id, payload))
        log.append("evaluation.requests", payload.hash, event)

    def cancel() -> None:
        event_id, known = rng.choice(requests)
        by = rng.choice(requests)[1]
        log.append("evaluation.cancellations", known.hash, env(EvaluationCancelled(
            hash=known.hash, request_event_id=event_id, hotkey=known.hotkey, uid=known.uid,
            block=known.block, code=RejectionCode.DUPLICATE_REPO,
            reason=f"duplicate of ns/{by.repo_name} submitted earlier at block {by.block}",
            displaced_by=by.source_event_id, displaced_by_hash=by.hash), known.hash))

    def status() -> None:
        event_id, known = rng.choice(requests)
        log.append("evaluation.status", known.hash, env(EvaluationStatusChanged(
            hash=known.hash, status=rng.choice(("QUEUED", "PRECHECK", "RUNNING", "RUNNING")),
            scoring_version=rng.choice((known.scoring_version, *VERSIONS)),
            evaluator=rng.choice(("e0", "e1")), note=rng.choice(NOTES),
            rescore_of=event_id if rng.random() < 0.2 else None), known.hash))

    def score() -> None:
        event_id, known = rng.choice(requests)
        completed = rng.random() < 0.8
        # One in ten answers no request of its hash: a made-up request id, or another hash's.
        forged = rng.random() < 0.1
        hash_ = rng.choice(requests)[1].hash if forged and rng.random() < 0.5 else known.hash
        answers = _id(rng) if forged and hash_ == known.hash else event_id
        log.append("scores", hash_, env(ScoreComputed(
            hash=hash_, scoring_version=rng.choice((known.scoring_version, *VERSIONS)),
            status="COMPLETED" if completed else "FAILED",
            total_score=rng.choice((0.0, 1.0, rng.random(), round(rng.random(), 5)))
            if completed else None,
            reason=None if completed else rng.choice(("out of memory", "no safetensors")),
            content_hash=rng.choice((None, "w1", "w2", f"w{rng.randrange(100)}")),
            evaluator=rng.choice(("e0", "e1")), request_event_id=answers,
            rescore_of=answers if rng.random() < 0.2 else None), hash_))

    def activate() -> None:
        log.append("scoring.active", "active",
                   env(ScoringActivated(scoring_version=rng.choice(SCORING_VERSIONS)), "active"))

    for _ in range(rng.randint(2, 8)):
        register()
    steps = [(register, 3), (hand_over, 1), (request, 10), (cancel, 2), (status, 8),
             (score, 6), (activate, 1)]
    actions, weights = zip(*steps, strict=True)
    while log.size < size:
        block += rng.randint(0, 40)
        action = rng.choices(actions, weights)[0]
        if action is not request and not requests and action in (cancel, status, score):
            action = request
        action()
    return log
