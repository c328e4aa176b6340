"""The whole path on a real broker and database: miner CLI → Faust → evaluator → sink → rows."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from producers.miner import registration, submission
from schemas.codec import MAX_EVENT_BYTES, encode
from speechstream.keys import create_key_file
from streams.settings import StreamsSettings
from tests.conftest import pick_ports
from tests.scorers import SAMPLES

pytestmark = pytest.mark.integration

TEST_SCORER = "tests.scorers:DeterministicScorer"


def _count(pipe, table: str, where: str = "true", params: tuple = ()) -> int:
    return pipe.query(f"SELECT count(*) FROM {table} WHERE {where}", params)[0][0]  # noqa: S608


def test_miner_cli_to_rows(pipeline, tmp_path) -> None:
    pipeline.start("streams", ["streams", "worker"])
    pipeline.start("evaluator", ["evaluator", "run", "--device", "cpu", "--scorer", TEST_SCORER])
    pipeline.start("sink", ["sink", "run"])
    names = ["alice", "bob", "carol"]
    for uid, name in enumerate(names):
        key = str(tmp_path / f"{name}.json")
        assert pipeline.cli("miner", "keygen", "--key-file", key).returncode == 0
        done = pipeline.cli("miner", "register", "--key-file", key, "--uid", str(uid),
                            "--block", "10")
        assert done.returncode == 0, done.stderr
    pipeline.wait(lambda: _count(pipeline, "miners") == 3, "3 registered miners")
    for name in names:
        done = pipeline.cli("miner", "submit", "--key-file", str(tmp_path / f"{name}.json"),
                            "--repo", f"{name}/tts-1", "--block", "1000")
        assert done.returncode == 0, done.stderr
        assert "hash=" in done.stdout
    pipeline.wait(lambda: _count(pipeline, "submissions", "status = 'COMPLETED'") == 3,
                  "3 COMPLETED submissions")
    rows = pipeline.query("SELECT repo_namespace, uid, score FROM submissions ORDER BY uid")
    assert [(r[0], r[1]) for r in rows] == [("alice", 0), ("bob", 1), ("carol", 2)]
    assert all(0.0 <= r[2] <= 1.0 for r in rows)
    assert _count(pipeline, "sample_results") == 3 * SAMPLES
    statuses = {r[0] for r in pipeline.query("SELECT status FROM status_events")}
    assert statuses == {"QUEUED", "PRECHECK", "RUNNING"}
    board = json.loads(pipeline.cli("leaderboard", "--json").stdout)
    assert [r["status"] for r in board] == ["COMPLETED"] * 3


def test_every_bad_input_is_turned_away_with_its_reason(pipeline, tmp_path) -> None:
    pipeline.start("streams", ["streams", "worker"])
    pipeline.start("sink", ["sink", "run"])
    alice, bob, eve, carol = (create_key_file(tmp_path / f"{n}.json")
                              for n in ("alice", "bob", "eve", "carol"))
    t = pipeline.kafka.topics
    pipeline.send(t.registrations, registration(alice, uid=0, block=1),
                  registration(bob, uid=1, block=1))
    pipeline.wait(lambda: _count(pipeline, "miners") == 2, "2 registered miners")
    # eve claims alice's uid
    pipeline.send(t.registrations, registration(eve, uid=0, block=2))

    good = submission(alice, repo_namespace="alice", repo_name="a1", block=1000)
    signed = submission(bob, repo_namespace="bob", repo_name="forged", block=1000)
    forged = signed.model_copy(update={"payload": signed.payload.model_copy(update={"block": 7})})
    pipeline.send(t.submissions, good)
    # The duplicate below must come after its original (a duplicate that arrives first, with a
    # later block, is displaced when the original comes: a rejection, but not undone).
    pipeline.wait(lambda: _count(pipeline, "submissions") == 1, "the first submission")
    pipeline.send(
        t.submissions,
        forged,
        submission(bob, repo_namespace="bob", repo_name="b0", block=1000, hash_override="42"),
        submission(carol, repo_namespace="carol", repo_name="c1", block=1000),
        submission(alice, repo_namespace="alice", repo_name="a2", block=1000 + 28_799),
        submission(bob, repo_namespace="alice", repo_name="a1", block=2000),
    )
    pipeline.send_raw(t.submissions, b"\x00 this is not json {", key="junk")
    wrong_version = json.loads(encode(good))
    wrong_version["schema_version"] = 9
    pipeline.send_raw(t.submissions, json.dumps(wrong_version).encode(), key="v9")
    pipeline.send_raw(t.submissions, b'{"pad": "' + b"x" * MAX_EVENT_BYTES + b'"}', key="big")
    later = submission(bob, repo_namespace="bob", repo_name="b1", block=40_000)
    same_again = submission(alice, repo_namespace="alice", repo_name="a1", block=1000)
    pipeline.send(t.submissions, later, same_again)

    pipeline.wait(lambda: _count(pipeline, "rejections") >= 6 and
                  _count(pipeline, "dead_letters") >= 3 and
                  _count(pipeline, "submissions") >= 2, "rejections, dead letters, requests")
    codes = dict(pipeline.query("SELECT code, message FROM rejections"))
    assert set(codes) == {"UID_TAKEN", "BAD_SIGNATURE", "HASH_MISMATCH", "UNREGISTERED_HOTKEY",
                          "RATE_LIMITED", "DUPLICATE_REPO"}
    assert "1 more blocks" in codes["RATE_LIMITED"]
    assert "expected" in codes["HASH_MISMATCH"]
    errors = sorted(r[0] for r in pipeline.query("SELECT error FROM dead_letters"))
    assert [e.split(":")[0].split(" ")[0] for e in errors] == ["not", "oversize", "unsupported"]
    raw = pipeline.query("SELECT raw FROM dead_letters WHERE error LIKE %s", ("not JSON%",))[0][0]
    assert bytes(raw) == b"\x00 this is not json {"
    queued = pipeline.query("SELECT repo_namespace || '/' || repo_name, status FROM submissions "
                            "ORDER BY 1")
    assert queued == [("alice/a1", "QUEUED"), ("bob/b1", "QUEUED")]
    # The same records are on the topics, readable by anyone.
    assert len(pipeline.read(t.rejected, 6)) == 6
    assert len(pipeline.read(t.deadletter, 3)) == 3
    assert _count(pipeline, "miners") == 2


def test_a_duplicate_holds_no_window_and_bent_names_are_turned_away(pipeline, tmp_path) -> None:
    pipeline.start("streams", ["streams", "worker"])
    pipeline.start("sink", ["sink", "run"])
    alice, bob = (create_key_file(tmp_path / f"{n}.json") for n in ("alice", "bob"))
    t = pipeline.kafka.topics
    pipeline.send(t.registrations, registration(alice, uid=0, block=1),
                  registration(bob, uid=1, block=1))
    pipeline.wait(lambda: _count(pipeline, "miners") == 2, "2 registered miners")
    pipeline.send(t.submissions, submission(alice, repo_namespace="alice", repo_name="a1",
                                            block=1000))
    pipeline.wait(lambda: _count(pipeline, "submissions") == 1, "the first submission")
    # bob's copy of alice's repo passes the per-hotkey checks, then is a duplicate...
    pipeline.send(t.submissions, submission(bob, repo_namespace="alice", repo_name="a1",
                                            block=2000))
    pipeline.wait(lambda: _count(pipeline, "rejections", "code = 'DUPLICATE_REPO'") == 1,
                  "the duplicate's rejection")
    # ...so it holds no window: his own repo 10,000 blocks later is accepted.
    pipeline.send(t.submissions, submission(bob, repo_namespace="bob", repo_name="b1",
                                            block=12_000))
    # A repo outside the Hub's naming rules, and a JSON object that is no event.
    pipeline.send(t.submissions, submission(bob, repo_namespace="..", repo_name="outside-root",
                                            block=50_000))
    pipeline.send_raw(t.submissions, b'{"hello": "world"}', key="hello")
    pipeline.wait(lambda: _count(pipeline, "submissions") == 2 and
                  _count(pipeline, "rejections") == 2 and _count(pipeline, "dead_letters") == 1,
                  "bob's own submission, the bent name, the stray object")
    queued = pipeline.query("SELECT repo_namespace || '/' || repo_name FROM submissions "
                            "ORDER BY 1")
    assert queued == [("alice/a1",), ("bob/b1",)]
    (message,) = pipeline.query("SELECT message FROM rejections WHERE code = 'INVALID_REPO'")
    assert "'..'" in message[0]
    (error,) = pipeline.query("SELECT error FROM dead_letters")
    assert error[0].startswith("not an event envelope"), error


def test_a_claimed_block_lies_between_registration_and_the_chain_head(
    pipeline, tmp_path
) -> None:
    # The head first: the worker reads chain.blocks to its end before it starts.
    assert pipeline.cli("chain", "tick", "--block", "6000").returncode == 0
    pipeline.start("streams", ["streams", "worker"])
    pipeline.start("sink", ["sink", "run"])
    alice, bob = (create_key_file(tmp_path / f"{n}.json") for n in ("alice", "bob"))
    t = pipeline.kafka.topics
    pipeline.send(t.registrations, registration(alice, uid=0, block=5990),
                  registration(bob, uid=1, block=5995))
    pipeline.wait(lambda: _count(pipeline, "miners") == 2, "2 registered miners")
    pipeline.send(t.submissions, submission(alice, repo_namespace="alice", repo_name="a1",
                                            block=5996))
    pipeline.wait(lambda: _count(pipeline, "submissions") == 1, "alice's submission")
    # bob takes alice's repo by claiming a block before his own registration: refused.
    pipeline.send(t.submissions,
                  submission(bob, repo_namespace="alice", repo_name="a1", block=5991),
                  submission(bob, repo_namespace="bob", repo_name="b1", block=9000))
    pipeline.wait(lambda: _count(pipeline, "rejections") == 2, "two refused blocks")
    # The head moves on (published just before the submission): bob's block is now in range.
    assert pipeline.cli("chain", "tick", "--block", "6250").returncode == 0
    pipeline.send(t.submissions, submission(bob, repo_namespace="bob", repo_name="b1",
                                            block=6240))
    pipeline.wait(lambda: _count(pipeline, "submissions") == 2, "bob's submission")
    messages = sorted(r[0] for r in pipeline.query(
        "SELECT message FROM rejections WHERE code = 'BLOCK_OUT_OF_RANGE'"))
    assert messages == ["block 5991 is before the hotkey's registration at block 5995",
                        "block 9000 is ahead of the chain's head (block 6000)"]
    holders = pipeline.query("SELECT repo_namespace || '/' || repo_name, hotkey FROM "
                             "submissions ORDER BY 1")
    assert holders == [("alice/a1", alice.hotkey), ("bob/b1", bob.hotkey)]


def test_a_hotkey_holding_a_uid_cannot_take_a_second(pipeline, tmp_path) -> None:
    pipeline.start("streams", ["streams", "worker"])
    pipeline.start("sink", ["sink", "run"])
    alice, bob = (create_key_file(tmp_path / f"{n}.json") for n in ("alice", "bob"))
    t = pipeline.kafka.topics
    pipeline.send(t.registrations, registration(alice, uid=4, block=1))
    pipeline.wait(lambda: _count(pipeline, "miners") == 1, "alice on uid 4")
    pipeline.send(t.registrations, registration(alice, uid=99, block=2))
    pipeline.wait(lambda: _count(pipeline, "rejections") == 1, "alice's second uid refused")
    ((code, message),) = pipeline.query("SELECT code, message FROM rejections")
    assert code == "HOTKEY_HAS_OTHER_UID" and "already holds uid 4" in message
    # alice keeps uid 4, and uid 99 was handed back: bob can take it.
    pipeline.send(t.registrations, registration(bob, uid=99, block=3))
    pipeline.wait(lambda: _count(pipeline, "miners") == 2, "bob on uid 99")
    rows = pipeline.query("SELECT hotkey, uid FROM miners ORDER BY uid")
    assert rows == [(alice.hotkey, 4), (bob.hotkey, 99)]
    assert _count(pipeline, "rejections") == 1


def test_a_failed_evaluation_frees_the_hotkeys_window(pipeline, tmp_path) -> None:
    pipeline.start("streams", ["streams", "worker"])
    pipeline.start("sink", ["sink", "run"])
    pipeline.start("evaluator", ["evaluator", "run", "--scorer", "tests.scorers:FailingScorer"])
    alice = create_key_file(tmp_path / "alice.json")
    t = pipeline.kafka.topics
    pipeline.send(t.registrations, registration(alice, uid=0, block=1))
    pipeline.wait(lambda: _count(pipeline, "miners") == 1, "alice registered")
    pipeline.send(t.submissions, submission(alice, repo_namespace="alice", repo_name="a1",
                                            block=1000))
    pipeline.wait(lambda: _count(pipeline, "submissions", "status = 'FAILED'") == 1,
                  "alice's first submission FAILED")
    failed = pipeline.read(t.failed, 1)
    assert [f.payload.block for f in failed] == [1000]
    # Within 28,800 blocks of the failed one: SPEC §3 counts only submissions that did not fail.
    pipeline.send(t.submissions, submission(alice, repo_namespace="alice", repo_name="a2",
                                            block=5000))
    pipeline.wait(lambda: _count(pipeline, "submissions") == 2, "alice's second submission")
    assert _count(pipeline, "rejections") == 0


def test_worker_restart_keeps_its_tables(pipeline, tmp_path) -> None:
    t = pipeline.kafka.topics
    alice = create_key_file(tmp_path / "alice.json")
    worker = pipeline.start("streams", ["streams", "worker"])
    pipeline.send(t.registrations, registration(alice, uid=5, block=1))
    pipeline.read(t.miners, 1)
    pipeline.send(t.submissions, submission(alice, repo_namespace="alice", repo_name="a1",
                                            block=1000))
    assert len(pipeline.read(t.evaluation_requests, 1)) == 1
    # Faust writes table changes to their changelog topics asynchronously; stop once written.
    changelog = t.changelog(StreamsSettings().app_id, "last_accepted")
    pipeline.wait(lambda: pipeline.count(changelog) == 1, "the changelog write")
    worker.stop()
    pipeline.start("streams", ["streams", "worker"])
    # Only the recovered tables know alice is registered and submitted at block 1000.
    pipeline.send(t.submissions,
                  submission(alice, repo_namespace="alice", repo_name="a2", block=1500),
                  submission(alice, repo_namespace="alice", repo_name="a3", block=40_000))
    # Faust delivers at least once: a record may be processed twice, with the same event id.
    requests = {r.event_id: r for r in pipeline.read(t.evaluation_requests, 2)}.values()
    assert sorted(r.payload.repo_name for r in requests) == ["a1", "a3"]
    rejected = {r.event_id: r for r in pipeline.read(t.rejected, 1)}.values()
    assert [r.payload.code.value for r in rejected] == ["RATE_LIMITED"]

    # A request delivered again, as after a crash between the table write and the sends, is
    # routed again with the same ids, not dropped as already seen.
    a1 = next(e for e in pipeline.read(t.accepted, 2) if e.payload.repo_name == "a1")
    before = [r for r in pipeline.read(t.evaluation_requests, 2) if r.payload.repo_name == "a1"]
    pipeline.send(t.accepted, a1)
    pipeline.wait(
        lambda: len([r for r in pipeline.read(t.evaluation_requests, 2)
                     if r.payload.repo_name == "a1"]) > len(before),
        "the request routed again",
    )
    again = [r for r in pipeline.read(t.evaluation_requests, 2) if r.payload.repo_name == "a1"]
    assert {r.event_id for r in again} == {before[0].event_id}



def test_a_worker_killed_and_restarted_resumes_within_seconds(pipeline, tmp_path) -> None:
    t = pipeline.kafka.topics
    alice = create_key_file(tmp_path / "alice.json")
    worker = pipeline.start("streams", ["streams", "worker"])
    pipeline.send(t.registrations, registration(alice, uid=5, block=1))
    pipeline.read(t.miners, 1)
    assert worker.process is not None
    worker.process.kill()  # kill -9: no leave-group, the group waits for its session to end
    worker.process.wait()
    restarted = time.monotonic()
    pipeline.start("streams", ["streams", "worker"])
    pipeline.send(t.submissions, submission(alice, repo_namespace="alice", repo_name="a1",
                                            block=1000))
    pipeline.read(t.evaluation_requests, 1, timeout_s=60)
    resumed_s = time.monotonic() - restarted
    print(f"worker resumed {resumed_s:.1f}s after its restart")
    assert resumed_s < 30  # Faust's default 60 s session once held a restart for ~60 s


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # not listening yet
        return 0, str(exc)


def test_services_serve_metrics_and_health(pipeline, tmp_path) -> None:
    ports = pick_ports(3)
    pipeline.start("streams", ["streams", "worker", "--metrics-port", str(ports[0])])
    pipeline.start("sink", ["sink", "run"], SPEECHSTREAM_SINK_METRICS_PORT=str(ports[1]))  # env
    pipeline.start("evaluator", ["evaluator", "run", "--scorer", TEST_SCORER,
                                 "--metrics-port", str(ports[2])])
    for port, service in zip(ports, ("intake", "sink", "evaluator"), strict=True):
        pipeline.wait(lambda p=port: _get(f"http://127.0.0.1:{p}/health")[0] == 200,
                      f"{service} healthy")
        code, body = _get(f"http://127.0.0.1:{port}/health")
        assert json.loads(body)["service"] == service
    assert "speechstream_streams_validated_total" in _get(f"http://127.0.0.1:{ports[0]}/metrics")[1]
    assert "speechstream_sink_batch_seconds" in _get(f"http://127.0.0.1:{ports[1]}/metrics")[1]
    assert "speechstream_evaluations_in_progress" in _get(
        f"http://127.0.0.1:{ports[2]}/metrics")[1]
    # The intake observes the wait of what it takes (from the broker's time) and says when it
    # last committed.
    pipeline.send(pipeline.kafka.topics.registrations,
                  registration(create_key_file(tmp_path / "alice.json"), uid=0, block=1))
    age = (f'speechstream_consumed_record_age_seconds_count{{consumer="intake",'
           f'topic="{pipeline.kafka.topics.registrations}"}} 1.0')
    pipeline.wait(lambda: age in _get(f"http://127.0.0.1:{ports[0]}/metrics")[1],
                  "the registration's age observed")
    pipeline.wait(lambda: json.loads(_get(f"http://127.0.0.1:{ports[0]}/health")[1])
                  ["details"]["last_commit_s_ago"] is not None, "the intake's commit")
