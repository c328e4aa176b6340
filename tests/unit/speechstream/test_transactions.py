"""The transactional producer when the broker misbehaves: a call that blocks past its timeout,
a fatal client error, an abort that fails, and real fencing."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from speechstream.exceptions import FencedError, TransactionAbortedError
from speechstream.kafka import transactions
from speechstream.kafka.transactions import TransactionalProducer
from tests.unit.consumers.fakes import FakeProducer, request_envelope

OFFSETS = [TopicPartition("t.requests", 0, 8)]
EVENT = ("t.scores", "k", request_envelope())


class BlockingProducer(FakeProducer):
    """``send_offsets_to_transaction`` never returns (until released), whatever its timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], metadata: Any, timeout: float
    ) -> None:
        self.release.wait()


class Clients:
    """Hands out the next prepared client each time a new one is asked for."""

    def __init__(self, *clients: FakeProducer) -> None:
        self.clients = list(clients)
        self.made: list[FakeProducer] = []

    def __call__(self, config: dict[str, Any]) -> FakeProducer:
        client = self.clients.pop(0)
        self.made.append(client)
        return client


def make(*clients: FakeProducer) -> tuple[TransactionalProducer, Clients, list[str]]:
    calls: list[str] = []
    factory = Clients(*clients)
    producer = TransactionalProducer(
        {}, new_client=factory, on_abort=lambda: calls.append("abort"),
        on_replace=lambda: calls.append("replace"),
    ).start()
    return producer, factory, calls


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions, "SEND_OFFSETS_TIMEOUT_S", 0.1)
    monkeypatch.setattr(transactions, "STUCK_GRACE_S", 0.1)


def fatal(code: int = KafkaError.INVALID_TXN_STATE) -> KafkaError:
    return KafkaError(code, "fatal", fatal=True)


def test_a_stuck_send_offsets_hands_over_to_a_new_client(short_timeouts: None) -> None:
    stuck, fresh = BlockingProducer(), FakeProducer()
    producer, factory, calls = make(stuck, fresh)
    started = time.monotonic()
    with pytest.raises(TransactionAbortedError, match="still blocked"):
        producer.transact([EVENT], offsets=OFFSETS, group_metadata=object())
    assert time.monotonic() - started < 5.0
    assert factory.made == [stuck, fresh] and calls == ["abort", "replace"]
    assert not producer.in_transaction and stuck.committed == []
    producer.transact([EVENT], offsets=OFFSETS, group_metadata=object())  # on the new one
    assert len(fresh.committed) == 1 and fresh.committed[0]["offsets"] == [("t.requests", 0, 8)]
    stuck.release.set()


def test_a_fatal_error_that_is_not_fencing_replaces_the_client() -> None:
    broken, fresh = FakeProducer(), FakeProducer()
    broken.fail["commit_transaction"] = [fatal()]
    producer, factory, calls = make(broken, fresh)
    with pytest.raises(TransactionAbortedError, match="INVALID_TXN_STATE|fatal"):
        producer.transact([EVENT])
    assert factory.made == [broken, fresh] and calls == ["abort", "replace"]
    producer.transact([EVENT])
    assert len(fresh.committed) == 1 and broken.committed == []


def test_an_abort_refused_after_a_broker_restart_replaces_the_client() -> None:
    broken, fresh = FakeProducer(), FakeProducer()
    broken.fail["send_offsets_to_transaction"] = [KafkaError(KafkaError._TRANSPORT, "down",
                                                             retriable=True)]
    broken.fail["abort_transaction"] = [fatal()]
    producer, factory, _ = make(broken, fresh)
    with pytest.raises(TransactionAbortedError):
        producer.transact([EVENT], offsets=OFFSETS, group_metadata=object())
    assert factory.made == [broken, fresh]
    producer.transact([EVENT], offsets=OFFSETS, group_metadata=object())
    assert len(fresh.committed) == 1


def test_a_replacement_that_cannot_init_yet_inits_before_the_next_transaction() -> None:
    broken, fresh = FakeProducer(), FakeProducer()
    broken.fail["abort_transaction"] = [KafkaError(KafkaError._TIMED_OUT, "away")]
    broken.fail["commit_transaction"] = [KafkaError(KafkaError._STATE, "x",
                                                    txn_requires_abort=True)]
    away = KafkaError(KafkaError._TRANSPORT, "away", retriable=True)
    fresh.fail["init_transactions"] = [away, away]  # at the hand-over, then once more
    inits: list[float] = []
    fresh_init = fresh.init_transactions
    fresh.init_transactions = lambda timeout: (inits.append(timeout), fresh_init(timeout))[1]  # type: ignore[method-assign]
    producer, _, _ = make(broken, fresh)
    with pytest.raises(TransactionAbortedError):
        producer.transact([EVENT])
    with pytest.raises(TransactionAbortedError, match="away"):  # still away: nothing begun
        producer.transact([EVENT])
    assert fresh.committed == [] and fresh._open is None
    producer.transact([EVENT])
    assert len(inits) == 3 and len(fresh.committed) == 1


def test_fencing_stops_the_producer() -> None:
    fenced = FakeProducer()
    fenced.fail["abort_transaction"] = [fatal(KafkaError._FENCED)]
    fenced.fail["commit_transaction"] = [KafkaError(KafkaError._STATE, "x",
                                                    txn_requires_abort=True)]
    producer, factory, _ = make(fenced)
    with pytest.raises(FencedError, match="fenced|FENCED"):
        producer.transact([EVENT])
    assert factory.made == [fenced]


def test_replacements_without_a_commit_between_them_are_bounded() -> None:
    clients = [FakeProducer() for _ in range(transactions.MAX_REPLACED_IN_A_ROW + 1)]
    for client in clients:
        client.fail["commit_transaction"] = [fatal()]
    producer, factory, _ = make(*clients)
    for _ in range(transactions.MAX_REPLACED_IN_A_ROW):
        with pytest.raises(TransactionAbortedError):
            producer.transact([EVENT])
    with pytest.raises(FencedError, match="replaced 5 times"):
        producer.transact([EVENT])
    assert len(factory.made) == transactions.MAX_REPLACED_IN_A_ROW + 1


def test_close_survives_a_client_that_failed_fatally() -> None:
    client = FakeProducer()
    producer, _, _ = make(client)

    def flush(timeout: float) -> int:
        raise KafkaException(fatal())

    client.flush = flush  # type: ignore[method-assign]
    producer.close()


def test_a_stuck_client_is_let_go_once_its_call_returns(short_timeouts: None) -> None:
    stuck, fresh = BlockingProducer(), FakeProducer()
    producer, _, _ = make(stuck, fresh)
    with pytest.raises(TransactionAbortedError):
        producer.transact([EVENT], offsets=OFFSETS, group_metadata=object())
    assert producer.left_behind == 1
    producer.transact([EVENT], offsets=OFFSETS, group_metadata=object())
    assert producer.left_behind == 1  # still blocked: kept
    stuck.release.set()
    time.sleep(0.05)  # its helper thread returns
    producer.transact([EVENT], offsets=OFFSETS, group_metadata=object())
    assert producer.left_behind == 0  # let go: its threads and sockets freed


def test_clients_stuck_for_good_stop_the_producer_instead_of_leaking(
        short_timeouts: None) -> None:
    stuck = [BlockingProducer() for _ in range(transactions.MAX_LEFT_BEHIND)]
    producer, _, _ = make(*stuck, FakeProducer(), FakeProducer(), FakeProducer())
    try:
        for _ in range(transactions.MAX_LEFT_BEHIND - 1):
            with pytest.raises(TransactionAbortedError):
                producer.transact([EVENT], offsets=OFFSETS, group_metadata=object())
        with pytest.raises(FencedError, match="stuck in a call that never returned"):
            producer.transact([EVENT], offsets=OFFSETS, group_metadata=object())
    finally:
        for client in stuck:
            client.release.set()
