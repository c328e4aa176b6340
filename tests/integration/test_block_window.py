"""Claimed blocks judged against the chain (real broker, worker, sink and PostgreSQL).

A registration's or submission's block lies at most ``SPEECHSTREAM_STREAMS_BLOCK_WINDOW`` (25)
blocks behind the chain's head as it stood when the record reached the broker (the topics'
``LogAppendTime``), and not ahead of the head; a head on ``chain.blocks`` that jumps further
than the time since the previous one allows is ignored.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from producers.miner import registration, submission
from schemas.envelope import new_envelope
from schemas.events import ChainBlock
from speechstream.kafka.admin import TIMESTAMP_TYPE, admin_client, create_topics
from speechstream.keys import create_key_file
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.integration

WINDOW = 25


def _count(pipe: Pipeline, sql: str, *params: object) -> int:
    return pipe.query(sql, params)[0][0]


def _tick(pipe: Pipeline, block: int) -> None:
    done = pipe.cli("chain", "tick", "--block", str(block))
    assert done.returncode == 0, done.stderr


def _rejections(pipe: Pipeline, hotkey: str) -> list[tuple[str, str]]:
    return pipe.query("SELECT code, message FROM rejections WHERE hotkey = %s ORDER BY time",
                      (hotkey,))


def test_backdated_registrations_and_submissions_are_refused(pipeline, tmp_path) -> None:
    alice, mallory, eve = (create_key_file(tmp_path / f"{n}.json")
                           for n in ("alice", "mallory", "eve"))
    t = pipeline.kafka.topics
    # Published before the worker starts: it reads chain.blocks to its end first. (A head
    # published while it runs is read when it has arrived, or at once for a block ahead.)
    _tick(pipeline, 1000)
    pipeline.start("streams", ["streams", "worker"])
    pipeline.start("sink", ["sink", "run"])
    # eve registers "at block 0" (the attack), mallory honestly a moment ago.
    pipeline.send(t.registrations, registration(alice, uid=0, block=1000),
                  registration(mallory, uid=1, block=990), registration(eve, uid=2, block=0))
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM miners") == 2 and
                  _count(pipeline, "SELECT count(*) FROM rejections") == 1,
                  "alice and mallory registered, eve refused")
    assert _rejections(pipeline, eve.hotkey) == [(
        "BLOCK_TOO_OLD", f"block 0 is more than {WINDOW} blocks behind the chain's head when "
        f"it reached the broker (block 1000); a claimed block lies within {WINDOW} blocks of "
        "the head")]
    assert pipeline.query("SELECT uid FROM miners WHERE hotkey = %s", (eve.hotkey,)) == []

    # The chain moves on; alice publishes her repo at the head (ahead of the head the worker
    # may know yet: it reads chain.blocks to its end before it decides).
    _tick(pipeline, 1200)
    pipeline.send(t.submissions, submission(alice, repo_namespace="alice", repo_name="a1",
                                            block=1195))
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM submissions") == 1,
                  "alice's submission")
    # mallory copies it "at block 1000": after her own registration, before alice's block.
    pipeline.send(t.submissions, submission(mallory, repo_namespace="alice", repo_name="a1",
                                            block=1000))
    pipeline.wait(lambda: len(_rejections(pipeline, mallory.hotkey)) == 1, "mallory refused")
    assert _rejections(pipeline, mallory.hotkey) == [(
        "BLOCK_TOO_OLD", f"block 1000 is more than {WINDOW} blocks behind the chain's head "
        f"when it reached the broker (block 1200); a claimed block lies within {WINDOW} blocks "
        "of the head")]
    # alice keeps her repo and her evaluation request: nothing displaced, nothing withdrawn.
    assert pipeline.query("SELECT hotkey, block, request_event_id IS NOT NULL FROM "
                          "submissions") == [(alice.hotkey, 1195, True)]
    requests = pipeline.read(t.evaluation_requests, 1)
    assert [(e.payload.hotkey, e.payload.block) for e in requests] == [(alice.hotkey, 1195)]
    assert pipeline.count(t.cancellations) == 0
    assert _rejections(pipeline, alice.hotkey) == []


def test_a_forged_far_head_is_ignored(pipeline, tmp_path) -> None:
    alice, mallory = (create_key_file(tmp_path / f"{n}.json") for n in ("alice", "mallory"))
    t = pipeline.kafka.topics
    _tick(pipeline, 1000)
    # A head four billion blocks on, a moment later: kept, it would let any block pass.
    pipeline.send(t.chain_blocks,
                  new_envelope(ChainBlock(block=4_000_000_000), key=None, producer="mallory"))
    pipeline.start("streams", ["streams", "worker"])
    pipeline.start("sink", ["sink", "run"])
    pipeline.send(t.registrations, registration(alice, uid=0, block=1000),
                  registration(mallory, uid=1, block=1000))
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM miners") == 2, "2 miners")
    pipeline.send(t.submissions,
                  submission(mallory, repo_namespace="m", repo_name="far", block=3_999_999_990))
    pipeline.send(t.submissions, submission(alice, repo_namespace="alice", repo_name="a1",
                                            block=1000))
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM submissions") == 1 and
                  len(_rejections(pipeline, mallory.hotkey)) == 1,
                  "alice accepted, mallory's claim against the forged head refused")
    assert _rejections(pipeline, mallory.hotkey) == [(
        "BLOCK_OUT_OF_RANGE", "block 3999999990 is ahead of the chain's head (block 1000)")]
    # The honest head after it advances as usual.
    _tick(pipeline, 1100)
    pipeline.send(t.submissions, submission(mallory, repo_namespace="m", repo_name="later",
                                            block=1090))
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM submissions") == 2,
                  "mallory's claim at the honest head")


def test_a_backlog_is_judged_by_the_head_of_its_time(pipeline, tmp_path) -> None:
    alice, mallory = (create_key_file(tmp_path / f"{n}.json") for n in ("alice", "mallory"))
    t = pipeline.kafka.topics
    _tick(pipeline, 1000)
    worker = pipeline.start("streams", ["streams", "worker"])
    pipeline.start("sink", ["sink", "run"])
    pipeline.send(t.registrations, registration(alice, uid=0, block=1000),
                  registration(mallory, uid=1, block=980))
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM miners") == 2, "2 miners")
    worker.stop()
    # While the worker is down: the head is 1100; alice signs at it, mallory backdates (after
    # her registration); then the chain moves on by far more than the window.
    _tick(pipeline, 1100)
    pipeline.send(t.submissions,
                  submission(alice, repo_namespace="alice", repo_name="a1", block=1100),
                  submission(mallory, repo_namespace="m", repo_name="old", block=1000))
    for head in (1300, 1500, 1700):
        _tick(pipeline, head)
    stamps = _timestamp_types(pipeline, t.submissions)
    assert stamps == {TIMESTAMP_LOG_APPEND_TIME}, stamps
    pipeline.start("streams", ["streams", "worker"])
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM submissions") == 1 and
                  len(_rejections(pipeline, mallory.hotkey)) == 1,
                  "the backlog: alice accepted, mallory refused")
    assert pipeline.query("SELECT hotkey, block FROM submissions") == [(alice.hotkey, 1100)]
    ((code, message),) = _rejections(pipeline, mallory.hotkey)
    assert code == "BLOCK_TOO_OLD" and "(block 1100)" in message, message
    # A claim appended now is judged by the head now.
    pipeline.send(t.submissions, submission(mallory, repo_namespace="m", repo_name="now",
                                            block=1600))
    pipeline.wait(lambda: len(_rejections(pipeline, mallory.hotkey)) == 2, "mallory again")
    code, message = _rejections(pipeline, mallory.hotkey)[1]
    assert code == "BLOCK_TOO_OLD" and "(block 1700)" in message, message


def _timestamp_types(pipe: Pipeline, topic: str) -> set[int]:
    """The timestamp types of every record of ``topic``."""
    consumer = Consumer(pipe.kafka.to_librdkafka(**{"group.id": "stamps"}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        types: set[int] = set()
        left = sum(ends.values())
        while left > 0:
            msg = consumer.poll(10)
            assert msg is not None, f"{left} records of {topic} not read"
            if msg.error() is None:
                types.add(msg.timestamp()[0])
                left -= 1
        return types
    finally:
        consumer.close()


def test_topics_create_stamps_existing_entry_topics_with_the_broker_s_time(
    kafka_settings,
) -> None:
    t = kafka_settings.topics
    entry = [t.registrations, t.submissions, t.chain_blocks]
    admin = admin_client(kafka_settings)

    def stamps(expected: str) -> None:
        """Wait until the broker describes every entry topic with ``expected`` (a change of
        configuration reaches the broker's view within moments)."""
        deadline = time.monotonic() + 15
        while True:
            found = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in entry])
            seen = {f.result(timeout=10)[TIMESTAMP_TYPE].value for f in found.values()}
            if seen == {expected}:
                return
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)

    stamps("LogAppendTime")  # created so
    # Topics created before the registry asked for it (the producer's time).
    create_time = ConfigEntry(TIMESTAMP_TYPE, "CreateTime",
                              incremental_operation=AlterConfigOpType.SET)
    for future in admin.incremental_alter_configs(
            [ConfigResource(ResourceType.TOPIC, n, incremental_configs=[create_time])
             for n in entry]).values():
        future.result(timeout=10)
    stamps("CreateTime")
    assert create_topics(kafka_settings) == []  # nothing new...
    stamps("LogAppendTime")  # ...and the broker's time again
