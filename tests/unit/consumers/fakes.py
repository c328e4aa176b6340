"""In-memory stand-ins for confluent-kafka's transactional producer, consumer and messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from schemas.codec import decode, encode
from schemas.envelope import Envelope, new_envelope
from schemas.events import EvaluationCancelled, EvaluationRequested
from schemas.fields import RejectionCode

HOTKEY = "ab" * 32
HASH = "18358495043599921355"


def request_envelope(hash_: str = HASH, event_id: str = "req-1") -> Envelope:
    """An evaluation request envelope for ``hash_``."""
    request = EvaluationRequested(
        hash=hash_, hotkey=HOTKEY, uid=1, repo_namespace="alice", repo_name="tts-ft-1",
        block=100, scoring_version="v1", source_event_id="sub-1",
    )
    return new_envelope(request, key=hash_, producer="test", event_id=event_id)


def cancellation(request_event_id: str = "req-1", hash_: str = HASH) -> EvaluationCancelled:
    """The withdrawal of the request ``request_event_id`` (displaced by an earlier duplicate)."""
    return EvaluationCancelled(
        hash=hash_, request_event_id=request_event_id, hotkey=HOTKEY, uid=1, block=100,
        code=RejectionCode.DUPLICATE_REPO, displaced_by="sub-0", displaced_by_hash="42",
        reason="duplicate of alice/tts-ft-1 submitted earlier at block 90 (hash 42)",
    )


@dataclass
class FakeMessage:
    """A consumed record."""

    _value: bytes | None
    _offset: int = 7
    _partition: int = 2
    _topic: str = "t.evaluation.requests"
    _key: bytes | None = b"key"
    _error: KafkaError | None = None

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> KafkaError | None:
        return self._error


def request_message(env: Envelope | None = None, **kwargs: Any) -> FakeMessage:
    """A record holding an encoded request."""
    return FakeMessage(encode(env or request_envelope()), **kwargs)


@dataclass
class FakeProducer:
    """Records committed and aborted transactions; ``fail`` raises at a named call."""

    committed: list[dict[str, Any]] = field(default_factory=list)
    aborted: int = 0
    fail: dict[str, list[KafkaError]] = field(default_factory=dict)
    _open: dict[str, Any] | None = None

    def _maybe_fail(self, call: str) -> None:
        if self.fail.get(call):
            raise KafkaException(self.fail[call].pop(0))

    def init_transactions(self, timeout: float) -> None:
        self._maybe_fail("init_transactions")

    def begin_transaction(self) -> None:
        assert self._open is None, "transaction already open"
        self._maybe_fail("begin_transaction")
        self._open = {"events": [], "offsets": None}

    def produce(self, topic: str, value: bytes, key: Any = None, on_delivery: Any = None) -> None:
        assert self._open is not None, "produce outside a transaction"
        assert on_delivery is not None, "every produce has a delivery callback"
        self._maybe_fail("produce")
        self._open["events"].append((topic, key, decode(value)))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], metadata: Any, timeout: float
    ) -> None:
        assert self._open is not None
        self._maybe_fail("send_offsets_to_transaction")
        self._open["offsets"] = [(tp.topic, tp.partition, tp.offset) for tp in offsets]

    def commit_transaction(self, timeout: float) -> None:
        assert self._open is not None
        self._maybe_fail("commit_transaction")
        self.committed.append(self._open)
        self._open = None

    def abort_transaction(self, timeout: float) -> None:
        self._maybe_fail("abort_transaction")
        self.aborted += 1
        self._open = None

    def flush(self, timeout: float) -> int:
        return 0

    def events(self, topic_suffix: str) -> list[Envelope]:
        """Committed envelopes on the topic whose name ends with ``topic_suffix``."""
        return [
            env for txn in self.committed for topic, _, env in txn["events"]
            if topic.endswith(topic_suffix)
        ]


@dataclass
class FakeConsumer:
    """Hands out queued messages; records seeks and subscriptions."""

    queue: list[FakeMessage] = field(default_factory=list)
    seeks: list[tuple[str, int, int]] = field(default_factory=list)
    subscribed: list[str] = field(default_factory=list)
    closed: bool = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.subscribed = topics

    def poll(self, timeout: float) -> FakeMessage | None:
        return self.queue.pop(0) if self.queue else None

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t.evaluation.requests", 2)]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return partitions  # not fetched from: no position, no lag

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return (-1001, -1001)

    def close(self) -> None:
        self.closed = True


class FakeScored:
    """The evaluator's index of committed scores, in memory (``consumers.scored.Scored``)."""

    def __init__(self, *keys: tuple[str, str],
                 withdrawn: dict[str, EvaluationCancelled] | None = None) -> None:
        self.keys = set(keys)
        self.withdrawn = dict(withdrawn or {})
        self.refreshes = 0

    def start(self) -> None:
        pass

    def refresh(self) -> None:
        self.refreshes += 1

    def add(self, hash_: str, scoring_version: str) -> None:
        self.keys.add((hash_, scoring_version))

    def withdrawal(self, request_event_id: str) -> EvaluationCancelled | None:
        return self.withdrawn.get(request_event_id)

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def close(self) -> None:
        pass
