"""The evaluator on a real broker: statuses, scores, failures, dead letters, and a kill -9.

Reads ``KAFKA_BOOTSTRAP_SERVERS`` (default ``127.0.0.1:19092``); every test has its own topic
prefix, consumer group and evaluator id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from consumers.base import Scorer
from consumers.evaluator import Evaluator, producer_config
from consumers.metrics import EvaluatorMetrics
from consumers.settings import EvaluatorSettings
from schemas.codec import decode
from schemas.envelope import Envelope, new_envelope
from schemas.events import DeadLetter, EvaluationRequested, EvaluationStatusChanged, ScoreComputed
from schemas.hashing import submission_hash
from speechstream.kafka.producer import EventProducer
from speechstream.settings import KafkaSettings
from tests.scorers import SLOW_FILE_ENV, DeterministicScorer, FailingScorer

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
HOTKEY = "cd" * 32


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
def evaluator_settings() -> EvaluatorSettings:
    """A group and evaluator id no other test uses; short polls."""
    return EvaluatorSettings(
        group_id=_unique("test-evaluators-"), evaluator_id=_unique("ev-"), device="cpu",
        poll_timeout_s=0.2, transaction_timeout_ms=60_000,
    )


def request(repo_name: str) -> Envelope:
    """An evaluation request for a repo of the test miner (a new event id each call)."""
    hash_ = submission_hash("tester", repo_name, "default", HOTKEY)
    payload = EvaluationRequested(
        hash=hash_, hotkey=HOTKEY, uid=3, repo_namespace="tester", repo_name=repo_name,
        block=1_000, source_event_id=_unique("sub-"),
    )
    return new_envelope(payload, key=hash_, producer="test")


def publish(settings: KafkaSettings, *items: Envelope | bytes) -> None:
    """Send envelopes (or raw bytes) to the evaluation-request topic and wait for delivery."""
    with EventProducer(settings) as producer:
        for item in items:
            if isinstance(item, bytes):
                producer.send_raw(settings.topics.evaluation_requests, item, key=b"raw")
            else:
                producer.send(settings.topics.evaluation_requests, item)
        producer.flush()


def read_until(
    settings: KafkaSettings, topic: str, done: Callable[[list[Envelope]], bool] | None = None,
    *, isolation: str = "read_committed", timeout_s: float = 30.0,
) -> list[Envelope]:
    """Envelopes on ``topic`` from the start, until ``done(envelopes)`` or the timeout.

    Without ``done``: everything up to the end of every partition (for read_committed, up to
    the last stable offset).
    """
    consumer = Consumer(settings.to_librdkafka(**{
        "group.id": _unique("test-reader-"), "isolation.level": isolation,
        "enable.auto.commit": False, "enable.partition.eof": True,
    }))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])  # 0: the beginning
        seen: list[Envelope] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done(seen) if done else len(at_end) == len(partitions):
                break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error() is None:
                seen.append(decode(msg.value()))
            elif msg.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.partition())
        return seen
    finally:
        consumer.close()


def scores_of(envelopes: list[Envelope], hash_: str) -> list[ScoreComputed]:
    return [
        e.payload for e in envelopes
        if isinstance(e.payload, ScoreComputed) and e.payload.hash == hash_
    ]


def committed_offsets(settings: KafkaSettings, group_id: str) -> int:
    """The sum of the group's committed offsets on the request topic (0 where none)."""
    topic = settings.topics.evaluation_requests
    consumer = Consumer(settings.to_librdkafka(**{"group.id": group_id}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return sum(max(tp.offset, 0) for tp in found)
    finally:
        consumer.close()


@pytest.fixture
def run_evaluator(
    kafka_settings: KafkaSettings, evaluator_settings: EvaluatorSettings
) -> Iterator[Callable[[Scorer], None]]:
    """Start an in-process evaluator thread with a scorer; stopped and closed after the test."""
    running: list[tuple[threading.Thread, threading.Event, Evaluator]] = []
    errors: list[BaseException] = []

    def start(scorer: Scorer) -> None:
        evaluator = Evaluator(
            kafka_settings, evaluator_settings, scorer,
            metrics=EvaluatorMetrics.create(CollectorRegistry()),
        )
        evaluator.start()
        stop = threading.Event()

        def target() -> None:
            try:
                evaluator.run(stop)
            except BaseException as exc:  # reported by the fixture's teardown
                errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        running.append((thread, stop, evaluator))

    yield start
    for thread, stop, evaluator in running:
        stop.set()
        thread.join(30)
        evaluator.close()
    assert not errors, errors


def test_request_gives_running_and_one_committed_score(
    kafka_settings: KafkaSettings, evaluator_settings: EvaluatorSettings,
    run_evaluator: Callable[[Scorer], None],
) -> None:
    env = request("tts-one")
    hash_ = env.key
    assert hash_ is not None
    publish(kafka_settings, env)
    run_evaluator(DeterministicScorer())

    scores = read_until(kafka_settings, kafka_settings.topics.scores,
                        lambda seen: bool(scores_of(seen, hash_)))
    (score,) = scores_of(scores, hash_)
    assert score.status == "COMPLETED" and score.total_score is not None
    assert score.request_event_id == env.event_id
    assert score.evaluator == f"{evaluator_settings.evaluator_id}-cpu"
    assert len(score.samples) == 3

    statuses = read_until(kafka_settings, kafka_settings.topics.evaluation_status,
                          lambda seen: len(seen) >= 2)
    assert [e.payload.status for e in statuses] == ["PRECHECK", "RUNNING"]  # type: ignore
    assert committed_offsets(kafka_settings, evaluator_settings.group_id) == 1


def test_a_request_delivered_again_is_not_evaluated_again(
    kafka_settings: KafkaSettings, evaluator_settings: EvaluatorSettings,
    run_evaluator: Callable[[Scorer], None],
) -> None:
    first = request("tts-once")
    hash_ = first.key
    assert hash_ is not None
    scorer = DeterministicScorer()
    publish(kafka_settings, first)
    run_evaluator(scorer)
    read_until(kafka_settings, kafka_settings.topics.scores,
               lambda seen: bool(scores_of(seen, hash_)))
    # The same request re-sent (a worker crash) and the submission re-published (a new id),
    # then a marker request behind them.
    again = new_envelope(first.payload, key=hash_, producer="test")
    marker = request("tts-marker")
    publish(kafka_settings, first, again, marker)
    deadline = time.monotonic() + 60
    while committed_offsets(kafka_settings, evaluator_settings.group_id) < 4:
        assert time.monotonic() < deadline, "the four requests were not all acknowledged"
        time.sleep(0.3)
    scores = read_until(kafka_settings, kafka_settings.topics.scores)  # all, to the end
    assert len(scores_of(scores, hash_)) == 1  # one committed score record, not three
    assert len(scores_of(scores, marker.key or "")) == 1
    assert scorer.scored == [hash_, marker.key]


def test_scorer_exception_is_failed_and_the_next_request_is_scored(
    kafka_settings: KafkaSettings, evaluator_settings: EvaluatorSettings,
    run_evaluator: Callable[[Scorer], None],
) -> None:
    bad, good = request("tts-bad"), request("tts-good")
    assert bad.key is not None and good.key is not None
    publish(kafka_settings, bad, good)
    run_evaluator(FailingScorer(fail_hashes={bad.key}))

    scores = read_until(kafka_settings, kafka_settings.topics.scores, lambda seen: len(seen) >= 2)
    (failed,) = scores_of(scores, bad.key)
    assert failed.status == "FAILED"
    assert failed.reason == f"RuntimeError: model exploded on {bad.key}"
    (completed,) = scores_of(scores, good.key)
    assert completed.status == "COMPLETED"
    assert committed_offsets(kafka_settings, evaluator_settings.group_id) == 2


def test_undecodable_request_goes_to_the_dead_letter_topic(
    kafka_settings: KafkaSettings, evaluator_settings: EvaluatorSettings,
    run_evaluator: Callable[[Scorer], None],
) -> None:
    good = request("tts-after-garbage")
    assert good.key is not None
    publish(kafka_settings, b"\x00 not an event", good)
    run_evaluator(DeterministicScorer())

    letters = read_until(kafka_settings, kafka_settings.topics.deadletter, bool)
    (letter,) = [e.payload for e in letters]
    assert isinstance(letter, DeadLetter)
    assert letter.topic == kafka_settings.topics.evaluation_requests
    assert "not JSON" in letter.error and letter.raw_size == len(b"\x00 not an event")
    scores = read_until(kafka_settings, kafka_settings.topics.scores, bool)
    assert [s.payload.hash for s in scores] == [good.key]  # type: ignore[union-attr]
    assert committed_offsets(kafka_settings, evaluator_settings.group_id) == 2


def _child_env(kafka: KafkaSettings, settings: EvaluatorSettings) -> dict[str, str]:
    """The environment of an evaluator child process with these settings."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "SPEECHSTREAM_TOPIC_PREFIX": kafka.topic_prefix,
        "SPEECHSTREAM_EVALUATOR_GROUP_ID": settings.group_id,
        "SPEECHSTREAM_EVALUATOR_EVALUATOR_ID": settings.evaluator_id,
        "SPEECHSTREAM_EVALUATOR_POLL_TIMEOUT_S": "0.2",
        "SPEECHSTREAM_EVALUATOR_TRANSACTION_TIMEOUT_MS": str(settings.transaction_timeout_ms),
    }


def _evaluator_process(
    kafka: KafkaSettings, settings: EvaluatorSettings, log: Path, *,
    scorer: str = "tests.scorers:SlowScorer", **extra_env: str,
) -> subprocess.Popen[bytes]:
    """``speechstream evaluator run --device cpu --scorer <scorer>`` as a child process."""
    env = {**_child_env(kafka, settings), **extra_env}
    command = [sys.executable, "-m", "cli.main", "evaluator", "run", "--device", "cpu",
               "--scorer", scorer]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=out)


def test_killed_mid_evaluation_leaves_exactly_one_score(
    kafka_settings: KafkaSettings, evaluator_settings: EvaluatorSettings, tmp_path: Path,
) -> None:
    env = request("tts-killed")
    hash_ = env.key
    assert hash_ is not None
    slow_file, log = tmp_path / "slow-seconds", tmp_path / "evaluator.log"
    slow_file.write_text("120")
    publish(kafka_settings, env)
    status_topic = kafka_settings.topics.evaluation_status

    def running(seen: list[Envelope]) -> bool:
        return any(isinstance(e.payload, EvaluationStatusChanged)
                   and e.payload.status == "RUNNING" for e in seen)

    first = _evaluator_process(kafka_settings, evaluator_settings, log,
                               **{SLOW_FILE_ENV: str(slow_file)})
    try:
        assert running(read_until(kafka_settings, status_topic, running)), log.read_text()
        first.send_signal(signal.SIGKILL)  # mid-evaluation: nothing of the score is committed
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert committed_offsets(kafka_settings, evaluator_settings.group_id) == 0
    assert read_until(kafka_settings, kafka_settings.topics.scores) == []

    slow_file.write_text("0.5")
    second = _evaluator_process(kafka_settings, evaluator_settings, log,
                                **{SLOW_FILE_ENV: str(slow_file)})
    try:
        scores = read_until(kafka_settings, kafka_settings.topics.scores,
                            lambda seen: bool(scores_of(seen, hash_)), timeout_s=60)
        assert len(scores_of(scores, hash_)) == 1, log.read_text()
        time.sleep(2)  # would a second score arrive?
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log.read_text()

    scores = read_until(kafka_settings, kafka_settings.topics.scores)
    (score,) = scores_of(scores, hash_)
    assert score.status == "COMPLETED" and score.request_event_id == env.event_id
    assert committed_offsets(kafka_settings, evaluator_settings.group_id) == 1
    statuses = read_until(kafka_settings, status_topic)
    # Both runs published PRECHECK and RUNNING, with the same event ids: sinks keep one each.
    assert len({e.event_id for e in statuses}) == 2 and len(statuses) == 4


class _CrashBeforeCommit:
    """A real transactional producer that kills its process instead of committing offsets."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.offsets_sent = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.producer, name)

    def send_offsets_to_transaction(self, *args: object) -> None:
        self.producer.send_offsets_to_transaction(*args)
        self.offsets_sent = True

    def commit_transaction(self, timeout: float) -> None:
        if not self.offsets_sent:  # a status transaction: commit it
            self.producer.commit_transaction(timeout)
            return
        self.producer.flush(10)  # the score is in the log, inside the open transaction
        os.kill(os.getpid(), signal.SIGKILL)


def crash_before_commit_main() -> None:
    """Child process: evaluate one request and die between producing its score and committing."""
    kafka, settings = KafkaSettings(), EvaluatorSettings()
    evaluator = Evaluator(
        kafka, settings, DeterministicScorer(),
        metrics=EvaluatorMetrics.create(CollectorRegistry()),
        producer=_CrashBeforeCommit(Producer(producer_config(kafka, settings))),  # type: ignore
    )
    evaluator.start()
    evaluator.run(threading.Event())


def test_killed_with_an_open_score_transaction_leaves_exactly_one_visible_score(
    kafka_settings: KafkaSettings, evaluator_settings: EvaluatorSettings,
    run_evaluator: Callable[[Scorer], None], tmp_path: Path,
) -> None:
    env = request("tts-zombie")
    hash_ = env.key
    assert hash_ is not None
    publish(kafka_settings, env)
    log = tmp_path / "crash.log"
    with log.open("ab") as out:
        child = subprocess.run(
            [sys.executable, "-c", "from tests.integration.test_evaluator import "
             "crash_before_commit_main as main; main()"],
            cwd=REPO_ROOT, env=_child_env(kafka_settings, evaluator_settings), stdout=out,
            stderr=out, timeout=60,
        )
    assert child.returncode == -signal.SIGKILL, log.read_text()
    raw = read_until(kafka_settings, kafka_settings.topics.scores, isolation="read_uncommitted")
    assert len(scores_of(raw, hash_)) == 1  # written, in a transaction left open
    # (its offset is pending too: the group's committed offsets are unstable until it ends)

    run_evaluator(DeterministicScorer())  # same transactional id: aborts the open transaction
    committed = read_until(kafka_settings, kafka_settings.topics.scores, bool)
    assert len(scores_of(committed, hash_)) == 1
    raw = read_until(kafka_settings, kafka_settings.topics.scores, isolation="read_uncommitted")
    assert len(scores_of(raw, hash_)) == 2  # the aborted duplicate is in the log, unseen
    assert len(scores_of(read_until(kafka_settings, kafka_settings.topics.scores), hash_)) == 1
    assert committed_offsets(kafka_settings, evaluator_settings.group_id) == 1


