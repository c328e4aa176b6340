"""The fault suite: the whole local pipeline under a backlog, faulted in turn — kill -9 of the
intake worker, of the sink and of the evaluator, a PostgreSQL crash-restart, a broker
restart — with every service restarted only where it was killed. Afterwards every accepted
submission has exactly one evaluation request, one QUEUED and one committed score, and every
service is still running. Each recovery time is printed (pytest ``-s``).

Marked ``slow`` (deselect with ``-m "not slow"``); CI runs it. It restarts the session's own
PostgreSQL and broker, so it needs the local stack and skips otherwise.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import pytest

from producers.miner import registration, submission
from speechstream.keys import create_key_file
from tests.conftest import Infrastructure
from tests.integration.pipeline import Pipeline
from tests.scorers import SLOW_SECONDS_ENV

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MINERS = 35
GROUP = 5
SCORE_SECONDS = "0.3"
SCORER = "tests.scorers:SlowScorer"


def _count(pipe: Pipeline, sql: str) -> int:
    return pipe.query(sql)[0][0]


def test_every_fault_in_turn_leaves_one_request_one_queued_one_score_each(
    pipeline: Pipeline, infrastructure: Infrastructure, tmp_path
) -> None:
    if infrastructure.stack is None:
        pytest.skip(f"restarting PostgreSQL and the broker needs the local stack, not "
                    f"{infrastructure.source}")
    stack = infrastructure.stack
    t = pipeline.kafka.topics
    scorer_env = {SLOW_SECONDS_ENV: SCORE_SECONDS}
    services = {
        "worker": (["streams", "worker"], {}),
        "sink": (["sink", "run"], {}),
        "evaluator": (["evaluator", "run", "--scorer", SCORER], scorer_env),
    }
    running = {name: pipeline.start(name, args, **env) for name, (args, env) in services.items()}

    def kill_and_restart(name: str) -> None:
        process = running[name].process
        assert process is not None
        process.kill()  # kill -9: no shutdown, no leave-group, open transactions left open
        process.wait()
        args, env = services[name]
        running[name] = pipeline.start(name, args, **env)

    keys = [create_key_file(tmp_path / f"miner{i}.json") for i in range(MINERS)]
    pipeline.send(t.registrations,
                  *(registration(k, uid=i, block=1) for i, k in enumerate(keys)))
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM miners") == MINERS,
                  "every miner registered")
    subs = [submission(k, repo_namespace=f"m{i}", repo_name="tts", block=1000)
            for i, k in enumerate(keys)]
    groups = [subs[i:i + GROUP] for i in range(0, MINERS, GROUP)]
    pipeline.send(t.submissions, *groups[0])  # the backlog the first faults land in

    def requests() -> int:
        return _count(pipeline, "SELECT count(*) FROM submissions")

    def scored() -> int:
        return _count(pipeline, "SELECT count(*) FROM scores")

    recovery: dict[str, float] = {}

    def after(fault: str, group: int, progress: Callable[[], int], timeout_s: float = 120.0
              ) -> None:
        """Send the next submissions, time the faulted service's first progress."""
        start, before = time.monotonic(), progress()
        pipeline.send(t.submissions, *groups[group])
        pipeline.wait(lambda: progress() > before, f"progress after {fault}",
                      timeout_s=timeout_s)
        recovery[fault] = time.monotonic() - start

    # 1. The intake worker, mid-backlog.
    pipeline.wait(lambda: requests() >= 1, "the first requests")
    kill_and_restart("worker")
    after("worker kill -9", 1, requests)
    # 2. The sink.
    kill_and_restart("sink")
    after("sink kill -9", 2, scored)
    # 3. The evaluator, mid-evaluation.
    kill_and_restart("evaluator")
    after("evaluator kill -9", 3, scored)
    # 4. PostgreSQL crashes and comes back.
    postgres = stack.postgres()
    postgres.stop(mode="immediate")
    time.sleep(3.0)
    postgres.start()
    after("PostgreSQL crash-restart (3 s down)", 4, scored)
    # 5. The broker stops and comes back, a backlog of requests in flight: every service
    # reconnects by itself (docs/operations.md, "The broker restarts").
    pipeline.wait(lambda: requests() == 5 * GROUP, "the requests before the broker restart")
    kafka = stack.kafka
    kafka.stop()
    time.sleep(3.0)
    kafka.start()
    kafka.wait_ready(60)
    back = time.monotonic()
    after("broker restart (3 s down): intake", 5, requests)
    pipeline.wait(lambda: scored() == 6 * GROUP, "every score after the broker restart",
                  timeout_s=180)
    recovery["broker restart (3 s down): the backlog scored"] = time.monotonic() - back
    pipeline.send(t.submissions, *groups[6])

    pipeline.wait(lambda: scored() == MINERS and _count(
        pipeline, "SELECT count(*) FROM submissions WHERE status = 'COMPLETED'") == MINERS,
        "every submission scored", timeout_s=240)
    pipeline.check()  # every service still running, none restarted by hand but the killed

    # Exactly one request, one QUEUED and one committed score per accepted submission.
    hashes = {s.payload.hash for s in subs}
    by_hash = pipeline.ids_by_hash(t.evaluation_requests, MINERS)
    assert set(by_hash) == hashes and all(len(ids) == 1 for ids in by_hash.values())
    scores: dict[str, int] = defaultdict(int)
    for env in pipeline.read(t.scores, MINERS):
        scores[env.payload.hash] += 1
    assert scores == dict.fromkeys(hashes, 1), "a submission scored twice (or not at all)"
    # The QUEUED rows are the requests' (the worker sends no status event for them).
    queued = pipeline.query("SELECT event_id FROM status_events WHERE status = 'QUEUED'")
    assert sorted(r[0] for r in queued) == sorted(i for ids in by_hash.values() for i in ids)
    print("\nrecovery: " + "; ".join(f"{what} {s:.1f} s" for what, s in recovery.items()))
