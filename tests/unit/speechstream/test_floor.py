"""The floor without a broker: record decoding, the consume loop's dead-letter policy, the
monitoring server and the service runner."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from schemas import DeadLetter, EvaluationRequested, EvaluationStatusChanged, new_envelope
from schemas.codec import MAX_EVENT_BYTES, encode
from speechstream.exceptions import ConsumeError, DecodeError, ServiceError
from speechstream.kafka.consumer import EventConsumer
from speechstream.kafka.records import dead_letter_for, decode_record
from speechstream.monitoring import Health, MonitoringServer
from speechstream.service import run_service
from speechstream.settings import KafkaSettings
from tests.unit.consumers.fakes import FakeMessage, request_envelope

KAFKA = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", SPEECHSTREAM_TOPIC_PREFIX="t.")
WHERE = {"topic": "t.evaluation.requests", "partition": 2, "offset": 5}


def test_decode_record_returns_the_expected_event() -> None:
    env = request_envelope()
    assert decode_record(encode(env), expected=EvaluationRequested, **WHERE) == env
    assert decode_record(encode(env), **WHERE) == env  # no expectation: any event


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\x00 not json", "not JSON"),
    (None, "empty record"),
    (b" " * (MAX_EVENT_BYTES + 1), "oversize payload"),
])
def test_an_undecodable_record_keeps_its_bytes_and_place(raw: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason) as info:
        decode_record(raw, **WHERE)
    error = info.value
    assert error.raw == (raw or b"")
    assert (error.topic, error.partition, error.offset) == ("t.evaluation.requests", 2, 5)
    letter = dead_letter_for(info.value, consumer="c").payload
    assert isinstance(letter, DeadLetter)
    assert (letter.topic, letter.partition, letter.offset, letter.consumer) == (
        "t.evaluation.requests", 2, 5, "c")
    assert reason in letter.error and letter.raw_size == len(raw or b"")


def test_a_valid_event_of_another_type_is_refused_with_both_names() -> None:
    status = new_envelope(EvaluationStatusChanged(hash="1", status="QUEUED"), key="1",
                          producer="t")
    with pytest.raises(DecodeError) as info:
        decode_record(encode(status), expected=(EvaluationRequested, DeadLetter), **WHERE)
    assert info.value.reason == (
        "wrong event type 'evaluation.status' on t.evaluation.requests "
        "(expected evaluation.requested or deadletter)"
    )


@dataclass
class _BatchConsumer:
    """A confluent consumer stand-in that hands out one batch."""

    batch: list[FakeMessage]
    subscribed: list[str] = field(default_factory=list)

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.subscribed = topics

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        out, self.batch = self.batch[:num_messages], self.batch[num_messages:]
        return out

    def poll(self, timeout: float) -> FakeMessage | None:
        return self.consume(1, timeout)[0] if self.batch else None


def _consumer(batch: list[FakeMessage]) -> EventConsumer:
    topics = [KAFKA.topics.evaluation_requests, KAFKA.topics.deadletter]
    return EventConsumer(
        KAFKA, name="test", topics=topics, config={"group.id": "g"},
        expected={KAFKA.topics.evaluation_requests: EvaluationRequested,
                  KAFKA.topics.deadletter: DeadLetter},
        client=_BatchConsumer(batch),  # type: ignore[arg-type]
    ).start()


def test_the_consume_loop_decodes_or_dead_letters_and_never_letters_a_letter() -> None:
    request = request_envelope()
    good = FakeMessage(encode(request), _offset=1)
    bad = FakeMessage(b"garbage", _offset=2)
    broken_letter = FakeMessage(b"garbage too", _offset=3, _topic=KAFKA.topics.deadletter)
    eof = FakeMessage(None, _error=KafkaError(KafkaError._PARTITION_EOF))
    transient = FakeMessage(None, _error=KafkaError(KafkaError._TRANSPORT, "down"))
    consumer = _consumer([good, bad, broken_letter, eof, transient])
    batch = consumer.poll(10, 0.1)
    assert len(batch) == 3
    assert batch.envelopes == [request] and batch.messages == [good]
    ((msg, letter),) = batch.dead_letters
    assert msg is bad and letter.payload.offset == 2  # type: ignore[union-attr]
    assert batch.kept == 1  # the broken dead letter stays where it is
    assert consumer.at_end == {("t.evaluation.requests", 2)}


def test_a_fatal_consumer_error_is_raised() -> None:
    fatal = FakeMessage(None, _error=KafkaError(KafkaError._FATAL, "fatal", fatal=True))
    with pytest.raises(ConsumeError, match="fatal"):
        _consumer([fatal]).poll(10, 0.1)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_monitoring_server_serves_metrics_and_health() -> None:
    registry = CollectorRegistry()
    Counter("speechstream_test_total", "a test counter", registry=registry).inc(3)
    state = {"health": Health(True, "ok", {"lag": 0})}
    server = MonitoringServer(registry, lambda: state["health"], port=0, host="127.0.0.1",
                              service="test").start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        code, body = _get(f"{base}/metrics")
        assert code == 200 and b"speechstream_test_total 3.0" in body
        code, body = _get(f"{base}/health")
        assert code == 200
        assert json.loads(body) == {"service": "test", "healthy": True, "status": "ok",
                                    "details": {"lag": 0}}
        state["health"] = Health(False, "stalled")
        code, body = _get(f"{base}/health")
        assert code == 503 and json.loads(body)["status"] == "stalled"
        assert _get(f"{base}/nothing")[0] == 404
    finally:
        server.stop()


def test_a_taken_port_is_a_clear_error() -> None:
    first = MonitoringServer(CollectorRegistry(), lambda: Health(True, "ok"), port=0,
                             host="127.0.0.1").start()
    try:
        with pytest.raises(ServiceError, match="choose another metrics port"):
            MonitoringServer(CollectorRegistry(), lambda: Health(True, "ok"),
                             port=first.port, host="127.0.0.1").start()
    finally:
        first.stop()


class _Service:
    name = "recorder"

    def __init__(self, fail_in: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_in = fail_in

    def _call(self, step: str) -> None:
        self.calls.append(step)
        if step == self.fail_in:
            raise ServiceError(f"{step} failed")

    def start(self) -> None:
        self._call("start")

    def run(self, stop: threading.Event) -> None:
        self._call("run")
        stop.wait(5)

    def close(self) -> None:
        self._call("close")

    def health(self) -> Health:
        return Health(True, "ok")


def test_the_runner_runs_until_the_stop_event_and_always_closes() -> None:
    service, stop = _Service(), threading.Event()
    stop.set()
    run_service(service, stop=stop, registry=CollectorRegistry())
    assert service.calls == ["start", "run", "close"]
    failing = _Service(fail_in="start")
    with pytest.raises(ServiceError, match="start failed"):
        run_service(failing, stop=threading.Event(), registry=CollectorRegistry())
    assert failing.calls == ["start", "close"]


def test_the_runner_serves_health_while_the_service_runs() -> None:
    registry, stop, seen = CollectorRegistry(), threading.Event(), {}
    port = MonitoringServer(registry, lambda: Health(True, "ok"), port=0,
                            host="127.0.0.1").start()
    free = port.port
    port.stop()

    class Probing(_Service):
        def run(self, stop: threading.Event) -> None:
            seen["health"] = _get(f"http://127.0.0.1:{free}/health")
            stop.set()

    run_service(Probing(), stop=stop, registry=registry, metrics_port=free,
                metrics_host="127.0.0.1")
    code, body = seen["health"]
    assert code == 200 and json.loads(body)["service"] == "recorder"
    with pytest.raises(OSError):  # the server is gone with the service
        urllib.request.urlopen(f"http://127.0.0.1:{free}/health", timeout=2)


class _Unread:
    """A consumer assigned partitions it has not fetched from yet (no positions, and cached
    watermarks of -1001 as librdkafka gives them), and the broker's answers about them."""

    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = ends

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t.scores", p) for p in self.ends]

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, -1001) for tp in tps]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float, cached: bool
                              ) -> tuple[int, int]:
        return (-1001, -1001) if cached else (0, self.ends[tp.partition])


class _Admin:
    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = ends

    def list_offsets(self, request: dict, **_: Any) -> dict:
        class Done:
            def __init__(self, offset: int) -> None:
                self.offset = offset

            def result(self) -> Done:
                return self

        return {tp: Done(self.ends[tp.partition]) for tp in request}


@pytest.mark.parametrize(("ends", "caught_up"), [({0: 0, 1: 0}, True), ({0: 0, 1: 5}, False)])
def test_a_partition_not_read_yet_is_caught_up_only_when_the_broker_says_it_is_empty(
    ends: dict[int, int], caught_up: bool
) -> None:
    consumer = EventConsumer(KAFKA, name="test", topics=["t.scores"], config={"group.id": "g"},
                             client=_Unread(ends))  # type: ignore[arg-type]
    consumer._admin = _Admin(ends)  # type: ignore[assignment]
    assert consumer.caught_up() is caught_up


@dataclass
class _Trickle:
    """Nothing fetched yet; one record arrives while the consumer waits, two more with it."""

    arriving: list[FakeMessage]
    calls: list[tuple[str, int | None, float]] = field(default_factory=list)

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.calls.append(("consume", num_messages, timeout))
        if self.calls[0][0] == "consume" and len(self.calls) == 1:
            return []  # nothing fetched yet
        out, self.arriving = self.arriving[:num_messages], self.arriving[num_messages:]
        return out

    def poll(self, timeout: float) -> FakeMessage | None:
        self.calls.append(("poll", None, timeout))
        return self.arriving.pop(0)


def test_a_batch_poll_returns_with_the_first_record_instead_of_waiting_for_a_full_batch(
) -> None:
    records = [FakeMessage(encode(request_envelope(event_id=f"r{i}")), _offset=i)
               for i in range(3)]
    client = _Trickle(list(records))
    consumer = EventConsumer(KAFKA, name="test", topics=[KAFKA.topics.evaluation_requests],
                             config={"group.id": "g"}, expected=EvaluationRequested,
                             client=client).start()  # type: ignore[arg-type]
    batch = consumer.poll(5000, 0.2)
    assert [env.event_id for env in batch.envelopes] == ["r0", "r1", "r2"]
    # Waited only for the first record; never asked for a full batch with a timeout.
    assert client.calls == [("consume", 5000, 0), ("poll", None, 0.2), ("consume", 4999, 0)]
