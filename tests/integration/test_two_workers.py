"""Two intake workers in one consumer group: the partitions are split between them, a second
worker joining mid-backlog and one of two killed mid-backlog (kill -9) lose nothing and
duplicate nothing — every accepted submission has exactly one evaluation request id and one
QUEUED id, and the partitions of the killed worker are taken over by the other.

Marked ``slow`` (a kill and a session timeout); CI runs it.
"""

from __future__ import annotations

import re
import time
import urllib.request

import pytest

from producers.miner import registration, submission
from speechstream.kafka.admin import group_members_with_partitions
from speechstream.keys import create_key_file
from tests.conftest import pick_ports
from tests.integration.pipeline import Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MINERS = 40
VALIDATED = re.compile(r'^speechstream_streams_validated_total\{type="submission.published"\} '
                       r'([0-9.e+]+)$', re.MULTILINE)


def _validated(port: int) -> float:
    """The submissions this worker has validated so far (0 before its first)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            found = VALIDATED.search(response.read().decode())
    except OSError:
        return 0.0
    return float(found.group(1)) if found else 0.0


def test_two_workers_split_the_work_and_one_killed_loses_and_repeats_nothing(
    pipeline: Pipeline, tmp_path
) -> None:
    t = pipeline.kafka.topics
    ports = pick_ports(2)

    def worker(name: str, port: int):  # noqa: ANN202 - a ServiceProcess
        return pipeline.start(name, ["streams", "worker", "--metrics-port", str(port)],
                              SPEECHSTREAM_STREAMS_DATA_DIR=str(tmp_path / name))

    first = worker("worker-a", ports[0])
    pipeline.start("sink", ["sink", "run"])
    keys = [create_key_file(tmp_path / f"miner{i}.json") for i in range(MINERS)]
    pipeline.send(t.registrations,
                  *(registration(k, uid=i, block=1) for i, k in enumerate(keys)))

    def count(sql: str) -> int:
        return pipeline.query(sql)[0][0]

    pipeline.wait(lambda: count("SELECT count(*) FROM miners") == MINERS, "every miner")
    subs = [submission(k, repo_namespace=f"m{i}", repo_name="tts", block=1000)
            for i, k in enumerate(keys)]
    requests = "SELECT count(*) FROM submissions"

    # A second worker joins while the first has a backlog.
    pipeline.send(t.submissions, *subs[:10])
    second = worker("worker-b", ports[1])
    pipeline.send(t.submissions, *subs[10:20])
    pipeline.wait(lambda: count(requests) == 20, "the first 20 requests")
    group = f"{pipeline.kafka.topic_prefix}speechstream-intake"
    pipeline.wait(lambda: group_members_with_partitions(pipeline.kafka, group) == 2,
                  "both workers own partitions", timeout_s=60)
    # New submissions (keyed by hotkey over 4 partitions) reach both.
    before = (_validated(ports[0]), _validated(ports[1]))
    pipeline.send(t.submissions, *subs[20:30])
    pipeline.wait(lambda: count(requests) == 30, "30 requests")
    pipeline.wait(lambda: _validated(ports[0]) > before[0] and _validated(ports[1]) > before[1],
                  "work done by both workers", timeout_s=30)

    # Each exports its consumer's lag (submissions, changelogs) and its health.
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/metrics", timeout=5) as response:
        exposition = response.read().decode()
    assert re.search(r'^speechstream_consumer_lag\{consumer="intake",group="[^"]+'
                     r'speechstream-intake",partition="\d",topic="[^"]+\.submissions"\} \d',
                     exposition, re.MULTILINE), exposition[-3000:]
    assert 'speechstream_healthy{service="intake",status="ok"} 1.0' in exposition

    # One of two is killed mid-backlog; the other takes its partitions after the session.
    pipeline.send(t.submissions, *subs[30:])
    assert second.process is not None
    second.process.kill()
    second.process.wait()
    killed = time.monotonic()
    pipeline.wait(lambda: count(requests) == MINERS, "every request after the kill",
                  timeout_s=120)
    print(f"\nthe other worker finished the backlog {time.monotonic() - killed:.1f}s after "
          f"the kill")
    assert first.process is not None and first.process.poll() is None

    hashes = {s.payload.hash for s in subs}
    requested = pipeline.ids_by_hash(t.evaluation_requests, MINERS)
    assert set(requested) == hashes and all(len(ids) == 1 for ids in requested.values())
    # The QUEUED rows are the requests' (the worker sends no status event for them).
    queued = pipeline.query("SELECT event_id FROM status_events WHERE status = 'QUEUED'")
    assert sorted(r[0] for r in queued) == sorted(i for ids in requested.values() for i in ids)
    assert count("SELECT count(*) FROM rejections") == 0
