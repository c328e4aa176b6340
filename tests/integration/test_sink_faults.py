"""The sink outlives a PostgreSQL or broker restart, and a killed sink's successor is back at once.

The restarts are of the session's own PostgreSQL and broker, so these tests need the local
stack (``tests/conftest.py``); with a broker and a database from the environment or from
testcontainers they are skipped. Each prints the time it measured (run pytest with ``-s``).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from typing import Any

import psycopg
import pytest

from devstack.stack import DevStack
from schemas import EvaluationStatusChanged, new_envelope
from schemas.envelope import Envelope
from tests.conftest import Infrastructure, pick_ports
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.integration

BATCH = 300
PG_DOWN_S = 4.0
BROKER_DOWN_S = 5.0


def _local_stack(infrastructure: Infrastructure) -> DevStack:
    if infrastructure.stack is None:
        pytest.skip(f"restarting the broker or the database needs the local stack, not "
                    f"{infrastructure.source}")
    return infrastructure.stack


def _statuses(first: int, n: int = BATCH) -> list[Envelope]:
    return [new_envelope(EvaluationStatusChanged(hash=str(h), status="PRECHECK"), key=str(h),
                         producer="t") for h in range(first, first + n)]


def _rows(pipe: Pipeline) -> int:
    return pipe.query("SELECT count(*) FROM status_events")[0][0]


def _assert_each_once(pipe: Pipeline, sent: list[Envelope]) -> None:
    found = [row[0] for row in pipe.query("SELECT event_id FROM status_events")]
    assert len(found) == len(sent) and set(found) == {env.event_id for env in sent}


def _health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # 503 while not healthy, with the same body
        return json.loads(exc.read())
    except OSError:  # not listening yet
        return {}


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))


def test_the_sink_waits_for_a_postgres_restart_and_writes_every_event_once(
    pipeline: Pipeline, infrastructure: Infrastructure,
) -> None:
    postgres = _local_stack(infrastructure).postgres()
    (port,) = pick_ports(1)
    sink = pipeline.start("sink", ["sink", "run", "--metrics-port", str(port)])
    topic = pipeline.kafka.topics.evaluation_status
    first, second, third = _statuses(0), _statuses(BATCH), _statuses(2 * BATCH)
    pipeline.send(topic, *first)
    pipeline.wait(lambda: _rows(pipeline) == BATCH, "the first batch")

    postgres.stop(mode="immediate")  # like a crash: the sink's connection dies
    down = time.monotonic()
    try:
        pipeline.send(topic, *second)
        pipeline.wait(lambda: _health(port).get("status") == "degraded",
                      "the sink reporting degraded", timeout_s=20)
        degraded = _health(port)
        time.sleep(max(0.0, PG_DOWN_S - (time.monotonic() - down)))
    finally:
        postgres.start()
    back = time.monotonic()
    pipeline.wait(lambda: _rows(pipeline) == 2 * BATCH, "the second batch", timeout_s=60)
    recovery = time.monotonic() - back
    print(f"\nPostgreSQL down {back - down:.1f} s; second batch visible {recovery:.2f} s "
          f"after it was back; health while down: {degraded}")

    assert degraded["details"]["step"] == "write"
    pipeline.wait(lambda: _health(port).get("status") == "ok", "the sink healthy again")
    assert _metric(port, 'speechstream_sink_retries_total{step="write"}') >= 1
    pipeline.send(topic, *third)
    pipeline.wait(lambda: _rows(pipeline) == 3 * BATCH, "the third batch")
    _assert_each_once(pipeline, first + second + third)
    pipeline.check()
    assert sink.process is not None and sink.process.poll() is None
    assert recovery < 15.0


def _write_waits_for_lock(pipe: Pipeline) -> bool:
    return pipe.query("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                      " AND datname = current_database()")[0][0] > 0


def test_the_sink_outlives_a_broker_restart_between_its_write_and_its_commit(
    pipeline: Pipeline, infrastructure: Infrastructure,
) -> None:
    broker = _local_stack(infrastructure).kafka
    (port,) = pick_ports(1)
    sink = pipeline.start("sink", ["sink", "run", "--metrics-port", str(port)])
    topic = pipeline.kafka.topics.evaluation_status
    first, second, third = _statuses(0), _statuses(BATCH), _statuses(2 * BATCH)
    pipeline.send(topic, *first)
    pipeline.wait(lambda: _rows(pipeline) == BATCH, "the first batch")

    # Hold the second batch's write on a table lock, so that the broker goes away between
    # the database commit and the offset commit (as in the reported NOT_COORDINATOR). With
    # one local broker the synchronous commit waits for it and succeeds once it is back; a
    # commit refused meanwhile (NOT_COORDINATOR, …) is retried (tests/unit/sinks).
    with psycopg.connect(pipeline.conninfo) as lock:
        lock.execute("LOCK TABLE status_events IN ACCESS EXCLUSIVE MODE")
        pipeline.send(topic, *second)
        pipeline.wait(lambda: _write_waits_for_lock(pipeline), "the write waiting for the lock")
        broker.stop()
        down = time.monotonic()
    try:
        time.sleep(max(0.0, BROKER_DOWN_S - (time.monotonic() - down)))
        health = _health(port)
        pipeline.check()
    finally:
        broker.start(install=False)
        broker.wait_ready(90.0)
    back = time.monotonic()
    pipeline.send(topic, *third)
    pipeline.wait(lambda: _rows(pipeline) == 3 * BATCH, "the third batch", timeout_s=60)
    recovery = time.monotonic() - back
    commits = _metric(port, 'speechstream_sink_retries_total{step="commit"}')
    print(f"\nbroker down {back - down:.1f} s (stopped {BROKER_DOWN_S:.0f} s, then started); "
          f"third batch visible {recovery:.2f} s after it answered again; commit retries: "
          f"{commits:.0f}; health while down: {health}")

    _assert_each_once(pipeline, first + second + third)
    pipeline.wait(lambda: _health(port).get("status") == "ok", "the sink healthy")
    pipeline.check()
    assert sink.process is not None and sink.process.poll() is None


def test_a_killed_sinks_successor_takes_the_partitions_back_at_once(pipeline: Pipeline) -> None:
    sink = pipeline.start("sink", ["sink", "run"])
    topic = pipeline.kafka.topics.evaluation_status
    first, second = _statuses(0), _statuses(BATCH)
    pipeline.send(topic, *first)
    pipeline.wait(lambda: _rows(pipeline) == BATCH, "the first batch")
    assert sink.process is not None
    os.killpg(sink.process.pid, signal.SIGKILL)  # no chance to leave the group
    sink.process.wait()

    restarted = time.monotonic()
    pipeline.start("sink", ["sink", "run"])
    pipeline.send(topic, *second)
    pipeline.wait(lambda: _rows(pipeline) == 2 * BATCH, "the second batch", timeout_s=60)
    took = time.monotonic() - restarted
    print(f"\nkilled sink replaced: second batch visible {took:.2f} s after the new sink "
          "started (process start included)")
    _assert_each_once(pipeline, first + second)
    assert took < 20.0  # a dynamic member would wait out the dead one's 45 s session


def test_a_write_that_waits_past_the_poll_interval_keeps_the_sink_in_its_group(
        pipeline: Pipeline) -> None:
    # The write waits on a lock (a rebuild's swap holds the tables so) three times longer than
    # the consumer's max.poll.interval.ms: the sink holds its partitions meanwhile, so
    # librdkafka never finds the interval exceeded and the group never takes them away.
    sink = pipeline.start("sink", ["sink", "run"],
                          SPEECHSTREAM_SINK_MAX_POLL_INTERVAL_MS="6000",
                          SPEECHSTREAM_SINK_SESSION_TIMEOUT_MS="6000")
    topic = pipeline.kafka.topics.evaluation_status
    first, second, third = _statuses(0), _statuses(BATCH), _statuses(2 * BATCH)
    pipeline.send(topic, *first)
    pipeline.wait(lambda: _rows(pipeline) == BATCH, "the first batch")
    with psycopg.connect(pipeline.conninfo) as lock:
        lock.execute("LOCK TABLE status_events IN ACCESS EXCLUSIVE MODE")
        pipeline.send(topic, *second)
        pipeline.wait(lambda: _write_waits_for_lock(pipeline), "the write waiting for the lock")
        pipeline.send(topic, *third)  # fetched while it holds: rewound, taken after
        time.sleep(18)
        pipeline.check()
    pipeline.wait(lambda: _rows(pipeline) == 3 * BATCH, "every batch", timeout_s=60)
    _assert_each_once(pipeline, first + second + third)
    log = sink.log_path.read_text()
    assert "poll interval" not in log.lower() and "MAXPOLL" not in log, log[-2000:]
    assert sink.process is not None and sink.process.poll() is None


def test_a_sink_that_reads_one_topic_more_gets_its_partitions(pipeline: Pipeline) -> None:
    # The sink before an upgrade read every topic but scores.audio; a static member that
    # rejoins under its old id keeps its old assignment, so the upgraded sink joins under the
    # id of its new topic list and gets every partition once its predecessor's session ends.
    from confluent_kafka import Consumer

    from sinks.runner import sink_topics, static_member_id
    from sinks.settings import SinkSettings

    topics = sink_topics(pipeline.kafka)
    before = [t for t in topics if t != pipeline.kafka.topics.audio]
    instance = SinkSettings().instance_id
    old = Consumer(pipeline.kafka.to_librdkafka(**{
        "group.id": f"{pipeline.kafka.topic_prefix}sink", "session.timeout.ms": 6000,
        "group.instance.id": static_member_id(instance, before)}))
    old.subscribe(before)
    deadline = time.monotonic() + 30
    while not old.assignment():
        assert time.monotonic() < deadline, "the old sink got no partition"
        old.poll(0.2)
    old.close()  # a static member leaves no group: its session runs out

    pipeline.start("sink", ["sink", "run"], SPEECHSTREAM_SINK_SESSION_TIMEOUT_MS="6000")
    clip = _clip_event()
    pipeline.send(pipeline.kafka.topics.audio, clip)
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM sample_audio")[0][0] == 1,
                  "the clip written", timeout_s=60)


def test_a_second_sink_under_the_same_instance_id_ends_the_first_with_the_reason(
        pipeline: Pipeline) -> None:
    # A consumer joining under the running sink's group.instance.id fences it (the broker's
    # FENCED_INSTANCE_ID, fatal in librdkafka). The sink had seen no trouble from the broker,
    # so it is not its own doing: it ends, saying why, instead of renewing its consumer and
    # fencing the other in turn.
    from confluent_kafka import Consumer

    from sinks.runner import sink_topics, static_member_id
    from sinks.settings import SinkSettings

    sink = pipeline.start("sink", ["sink", "run"])
    topic = pipeline.kafka.topics.evaluation_status
    pipeline.send(topic, *_statuses(0))
    pipeline.wait(lambda: _rows(pipeline) == BATCH, "the first batch")
    topics = sink_topics(pipeline.kafka)
    other = Consumer(pipeline.kafka.to_librdkafka(**{
        "group.id": f"{pipeline.kafka.topic_prefix}sink", "enable.auto.commit": False,
        "group.instance.id": static_member_id(SinkSettings().instance_id, topics)}))
    other.subscribe(topics)
    try:
        deadline = time.monotonic() + 30
        while not other.assignment():
            assert time.monotonic() < deadline, "the second consumer got no partition"
            other.poll(0.2)
        pipeline.send(topic, *_statuses(BATCH))  # the first sink's next commit is refused
        assert sink.process is not None
        sink.process.wait(timeout=60)
    finally:
        other.close()
    assert sink.process.returncode != 0
    log = sink.log_path.read_text()
    assert "is a second sink running with SPEECHSTREAM_SINK_INSTANCE_ID=" in log, log[-2000:]
    assert "rejoining with a new one" not in log


def _clip_event() -> Envelope:
    import numpy as np

    from schemas.events import SampleAudio
    from scoring.audio import encode_clip

    encoded = encode_clip(np.zeros(2400, dtype=np.float32), 24_000)
    opus, mp3 = encoded.b64()
    return new_envelope(SampleAudio(
        hash="5", scoring_version="v2", evaluator="e", score_event_id="sc", request_event_id="r",
        index=0, clip="generated", sample_rate=24_000, duration_s=0.1, opus_b64=opus,
        mp3_b64=mp3), key="5", producer="t")
