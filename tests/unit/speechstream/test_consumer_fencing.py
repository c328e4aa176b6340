"""A static member's fencing is its own doing when the broker failed it lately: since its last
commit that succeeded (librdkafka reports a broker that stays away through the client's
``error_cb``, never through a poll), or within twice the session timeout. Otherwise another
consumer joined under the same instance id."""

from __future__ import annotations

import logging
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
    """Owns one partition; each commit succeeds unless told to fail, and takes ``wait_s`` of
    the clock."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.fail: KafkaError | None = None
        self.clock = clock
        self.wait_s = 0.0

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t.scores", 0)]

    def commit(self, offsets: Any = None, asynchronous: bool = True) -> None:
        if self.clock is not None:
            self.clock.now += self.wait_s
        if self.fail is not None:
            raise KafkaException(self.fail)


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


def test_the_client_reports_a_failing_broker_to_the_consumer(
    monkeypatch: pytest.MonkeyPatch, clock: Clock,
) -> None:
    # Without an error_cb librdkafka only logs a broker that is away, and poll() never hands
    # it over (checked against a closed port): the consumer must install one.
    configs: list[dict[str, Any]] = []

    def new_client(config: dict[str, Any]) -> Client:
        configs.append(config)
        return Client()

    monkeypatch.setattr(module, "Consumer", new_client)
    consumer = EventConsumer(
        KafkaSettings(SPEECHSTREAM_TOPIC_PREFIX="t."), name="speechstream-sink",
        topics=["t.scores"], config={"group.id": "t.sink", "group.instance.id": "sink-1"})
    consumer._new_client()
    assert not consumer.fenced_by_itself(FENCED)
    configs[0]["error_cb"](KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert consumer.fenced_by_itself(FENCED)


def test_a_broker_away_for_minutes_makes_the_fencing_that_follows_its_own(clock: Clock) -> None:
    consumer = _consumer(Client())
    consumer.on_client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))  # then every 10 s
    clock.now += 600
    assert consumer.fenced_by_itself(FENCED)


def test_a_fatal_error_reported_by_the_client_is_no_trouble(clock: Clock) -> None:
    consumer = _consumer(Client())
    consumer.on_client_error(KafkaError(KafkaError.FENCED_INSTANCE_ID, fatal=True))
    assert not consumer.fenced_by_itself(FENCED)


def test_a_commit_that_succeeded_since_the_trouble_ends_it_once_the_window_passed(
    clock: Clock,
) -> None:
    client = Client()
    consumer = _consumer(client)
    consumer.on_client_error(KafkaError(KafkaError._TRANSPORT))
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
    dynamic.on_client_error(KafkaError(KafkaError._TRANSPORT))
    assert not dynamic.fenced_by_itself(FENCED)
    troubled = _consumer(Client())
    troubled.on_client_error(KafkaError(KafkaError._TRANSPORT))
    assert not troubled.fenced_by_itself(ConsumeError("not a fencing"))


@pytest.mark.parametrize(("wait_s", "its_own"), [(125.0, True), (2.0, False)])
def test_a_fencing_that_answers_a_commit_after_a_whole_session_is_its_own(
    clock: Clock, wait_s: float, its_own: bool,
) -> None:
    # A synchronous commit blocked through a broker outage serves no callback: the client's
    # reports of the outage are still queued when the fencing answers it.
    client = Client(clock)
    consumer = _consumer(client)  # a 10 s session
    client.fail, client.wait_s = KafkaError(KafkaError.FENCED_INSTANCE_ID), wait_s
    with pytest.raises(ConsumeError) as raised:
        consumer.commit([TopicPartition("t.scores", 0, 5)])
    assert consumer.fenced_by_itself(raised.value) is its_own


def test_reports_of_a_failing_broker_are_warned_of_once_a_minute(
    clock: Clock, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    consumer = _consumer(Client())
    for _ in range(13):  # two minutes of "all brokers down", reported every 10 s
        consumer.on_client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
        clock.now += 10
    levels = [r.levelname for r in caplog.records if "broker:" in r.getMessage()]
    assert levels.count("WARNING") == 3 and levels.count("DEBUG") == 10
