"""A static member's fencing is its own doing when the broker failed it lately: since its last
commit that succeeded (librdkafka reports a broker that stays away once, then suppresses the
identical errors), or within twice the session timeout. Otherwise another consumer joined
under the same instance id."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from speechstream.exceptions import ConsumeError
from speechstream.kafka import consumer as module
from speechstream.kafka.consumer import EventConsumer
from speechstream.settings import KafkaSettings

FENCED = ConsumeError("speechstream-sink: committing offsets failed")
FENCED.__cause__ = KafkaException(KafkaError(KafkaError.FENCED_INSTANCE_ID))


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


class Client:
    """Owns one partition; each commit succeeds unless told to fail."""

    def __init__(self) -> None:
        self.fail: KafkaError | None = None

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t.scores", 0)]

    def commit(self, offsets: Any = None, asynchronous: bool = True) -> None:
        if self.fail is not None:
            raise KafkaException(self.fail)


class Failed:
    """A consumer error as poll() hands it over."""

    def __init__(self, code: int) -> None:
        self._error = KafkaError(code)

    def error(self) -> KafkaError:
        return self._error


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(module.time, "monotonic", clock)
    return clock


def _consumer(client: Client, **config: Any) -> EventConsumer:
    config = {"group.id": "t.sink", "group.instance.id": "sink-1",
              "session.timeout.ms": 10_000, **config}
    return EventConsumer(KafkaSettings(SPEECHSTREAM_TOPIC_PREFIX="t."), name="speechstream-sink",
                         topics=["t.scores"], config=config, client=client)


def test_a_broker_away_for_minutes_makes_the_fencing_that_follows_its_own(clock: Clock) -> None:
    consumer = _consumer(Client())
    consumer.decode([Failed(KafkaError._ALL_BROKERS_DOWN)])  # reported once, then suppressed
    clock.now += 600
    assert consumer.fenced_by_itself(FENCED)


def test_a_commit_that_succeeded_since_the_trouble_ends_it_once_the_window_passed(
    clock: Clock,
) -> None:
    client = Client()
    consumer = _consumer(client)
    consumer.decode([Failed(KafkaError._TRANSPORT)])
    consumer.commit([TopicPartition("t.scores", 0, 5)])
    clock.now += 30
    assert consumer.fenced_by_itself(FENCED)  # within the window (a minute at least)
    clock.now += 60
    assert not consumer.fenced_by_itself(FENCED)


def test_a_refused_commit_is_trouble_and_a_commit_of_nothing_owned_does_not_end_it(
    clock: Clock,
) -> None:
    client = Client()
    consumer = _consumer(client)
    client.fail = KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)
    with pytest.raises(ConsumeError, match="committing offsets failed"):
        consumer.commit([TopicPartition("t.scores", 0, 5)])
    client.fail = None
    consumer.commit([TopicPartition("t.scores", 9, 5)])  # not owned: the broker is not asked
    clock.now += 600
    assert consumer.fenced_by_itself(FENCED)


def test_without_trouble_or_without_an_instance_id_a_fencing_is_not_its_own(
    clock: Clock,
) -> None:
    assert not _consumer(Client()).fenced_by_itself(FENCED)
    dynamic = _consumer(Client(), **{"group.instance.id": None})
    dynamic._config.pop("group.instance.id")
    dynamic.decode([Failed(KafkaError._TRANSPORT)])
    assert not dynamic.fenced_by_itself(FENCED)
    troubled = _consumer(Client())
    troubled.decode([Failed(KafkaError._TRANSPORT)])
    assert not troubled.fenced_by_itself(ConsumeError("not a fencing"))
