"""Records the floor's readers cannot process: which errors are a record's, and what a
``LogReader`` does with a record that does not decode, does not belong, or that its ``apply``
raises on (no broker)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaError, KafkaException

from schemas.codec import MAX_VECTOR_BYTES, encode
from schemas.envelope import Envelope, new_envelope
from schemas.events import ChainBlock, DeadLetter, MinerRegistered
from schemas.topics import SCORES, SUBMISSIONS, WEIGHTS
from speechstream.exceptions import DeliveryError, TransactionAbortedError
from speechstream.kafka.admin import required_settings
from speechstream.kafka.reader import LogReader, ledger_expected
from speechstream.kafka.records import caused_by_kafka, unprocessable_reason
from speechstream.kafka.transactions import TransactionalProducer
from speechstream.ledger import Ledger
from speechstream.settings import KafkaSettings
from tests.unit.consumers.fakes import FakeMessage, FakeProducer

KAFKA = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", SPEECHSTREAM_TOPIC_PREFIX="t.")


def registered(uid: int) -> Envelope:
    hotkey = f"{uid:02x}" * 32
    return new_envelope(MinerRegistered(hotkey=hotkey, uid=uid, block=1, signature="cd" * 64),
                        key=hotkey, producer="t")


@dataclass
class FakeLogClient:
    """A consumer handing out ``messages`` once (``consume``, then ``poll``)."""

    messages: list[FakeMessage] = field(default_factory=list)

    def consume(self, n: int, timeout: float) -> list[FakeMessage]:
        out, self.messages = self.messages[:n], self.messages[n:]
        return out

    def poll(self, timeout: float) -> FakeMessage | None:
        return self.messages.pop(0) if self.messages else None


def on_miners(value: bytes | None, offset: int) -> FakeMessage:
    return FakeMessage(value, _offset=offset, _partition=0, _topic=KAFKA.topics.miners)


def test_kafka_and_transaction_errors_are_never_a_records_fault() -> None:
    kafka = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))
    assert caused_by_kafka(kafka)
    assert caused_by_kafka(TransactionAbortedError("aborted"))
    assert caused_by_kafka(DeliveryError("broker away"))
    try:  # a Kafka error under another one still counts
        try:
            raise kafka
        except KafkaException as exc:
            raise RuntimeError("while reporting") from exc
    except RuntimeError as wrapped:
        assert caused_by_kafka(wrapped)
    assert not caused_by_kafka(ValueError("a value the code does not expect"))
    assert not caused_by_kafka(KeyError("DONE"))


def test_the_reason_names_the_consumer_and_the_error_in_one_line() -> None:
    reason = unprocessable_reason(ValueError("first line\nsecond line"), consumer="val")
    assert reason == "val cannot process it: ValueError: first line"
    assert unprocessable_reason(ValueError("x" * 5000), consumer="val").__len__() == 1000
    assert unprocessable_reason(AssertionError(), consumer="v") == (
        "v cannot process it: AssertionError")


def test_a_record_apply_raises_on_is_skipped_with_its_dead_letter_and_the_rest_applied() -> None:
    ledger = Ledger()
    applied: list[Envelope] = []

    def apply(env: Envelope) -> None:
        p = env.payload
        if isinstance(p, MinerRegistered) and p.uid == 7:
            raise ValueError("uid 7 is not expected")
        ledger.apply(env)
        applied.append(env)

    letters: list[tuple[FakeMessage, Envelope]] = []
    client = FakeLogClient([on_miners(encode(registered(u)), u) for u in (1, 7, 2)])
    reader = LogReader(KAFKA, [KAFKA.topics.miners], apply, name="reader-under-test",
                       on_dead_letter=lambda m, e: letters.append((m, e)),
                       client=client)  # type: ignore[arg-type]
    assert reader.read_new() == 3
    assert sorted(h.uid for h in ledger.holders().values()) == [1, 2]
    assert (reader.applied, reader.unprocessable, reader.undecodable) == (3, 1, 0)
    ((msg, letter),) = letters
    assert msg.offset() == 7
    payload = letter.payload
    assert isinstance(payload, DeadLetter)
    assert (payload.topic, payload.partition, payload.offset) == (KAFKA.topics.miners, 0, 7)
    assert payload.error == ("reader-under-test cannot process it: "
                             "ValueError: uid 7 is not expected")
    assert payload.consumer == "reader-under-test"


def test_a_kafka_error_raised_by_apply_is_raised_not_skipped() -> None:
    def apply(env: Envelope) -> None:
        raise DeliveryError("the broker is away")

    client = FakeLogClient([on_miners(encode(registered(1)), 0)])
    reader = LogReader(KAFKA, [KAFKA.topics.miners], apply, name="r",
                       client=client)  # type: ignore[arg-type]
    with pytest.raises(DeliveryError):
        reader.read_new()


def test_a_ledger_reader_refuses_an_event_that_does_not_belong_on_its_topic() -> None:
    ledger = Ledger()
    letters: list[Envelope] = []
    head_on_miners = new_envelope(ChainBlock(block=99_999), key=None, producer="attacker")
    out_of_bounds = encode(registered(1)).replace(b'"uid":1', b'"uid":5000')
    client = FakeLogClient([on_miners(encode(head_on_miners), 0),
                            on_miners(out_of_bounds, 1),
                            on_miners(encode(registered(2)), 2)])
    expected = ledger_expected(KAFKA)
    reader = LogReader(KAFKA, list(expected), ledger.apply, name="r", expected=expected,
                       on_dead_letter=lambda m, e: letters.append(e),
                       client=client)  # type: ignore[arg-type]
    reader.read_new()
    assert ledger.head is None  # a head block on the registry moves no head
    assert [h.uid for h in ledger.holders().values()] == [2]
    errors = [e.payload.error for e in letters]  # type: ignore[union-attr]
    assert errors[0] == (f"wrong event type 'chain.block' on {KAFKA.topics.miners} (expected "
                         "miner.registered or uid.handover or uid.revoked)")
    assert errors[1].startswith("schema violation") and "uid" in errors[1]
    assert reader.undecodable == 2


class _Unencodable:
    key = None

    def model_dump_json(self, **kwargs: object) -> str:
        raise ValueError("no JSON for this one")


def test_a_transaction_that_fails_on_its_own_event_is_aborted_and_the_next_starts_clean() -> None:
    client = FakeProducer()
    producer = TransactionalProducer({}, client=client)  # type: ignore[arg-type]
    producer.start()
    with pytest.raises(ValueError, match="no JSON"):
        producer.transact([("t.x", None, _Unencodable())])  # type: ignore[list-item]
    assert client.aborted == 1 and not producer.in_transaction
    producer.transact([("t.x", None, registered(1))])
    assert len(client.committed) == 1


def test_an_existing_topic_is_given_what_its_spec_cannot_do_without() -> None:
    assert required_settings(WEIGHTS) == {"max.message.bytes": str(MAX_VECTOR_BYTES + 65536)}
    assert required_settings(SUBMISSIONS) == {"message.timestamp.type": "LogAppendTime"}
    assert required_settings(SCORES) == {}  # its retention and policy stay as they are
