"""An operator hands a uid to another hotkey: real broker, worker, sink and PostgreSQL."""

from __future__ import annotations

import pytest

from producers.miner import registration, submission
from producers.operator import uid_reassignment
from speechstream.keys import create_key_file

pytestmark = pytest.mark.integration


def _rows(pipe, statement: str, params: tuple = ()) -> list[tuple]:
    return pipe.query(statement, params)


def _miners(pipe) -> dict[str, int | None]:
    return dict(_rows(pipe, "SELECT hotkey, uid FROM miners"))


def _rejections(pipe) -> list[tuple[str, str, str | None]]:
    return _rows(pipe, "SELECT code, message, hotkey FROM rejections ORDER BY time")


def test_the_operator_hands_a_uid_over(pipeline, tmp_path) -> None:
    operator_file = tmp_path / "operator.json"
    operator = create_key_file(operator_file)
    alice, bob, carol, eve = (create_key_file(tmp_path / f"{n}.json")
                              for n in ("alice", "bob", "carol", "eve"))
    pipeline.start("streams", ["streams", "worker"],
                   SPEECHSTREAM_STREAMS_OPERATOR_KEY=operator.hotkey)
    pipeline.start("sink", ["sink", "run"])
    t = pipeline.kafka.topics
    pipeline.send(t.registrations, registration(alice, uid=0, block=1),
                  registration(carol, uid=2, block=1))
    pipeline.wait(lambda: len(_miners(pipeline)) == 2, "2 registered miners")
    pipeline.send(t.submissions, submission(alice, repo_namespace="alice", repo_name="a1",
                                            block=1000))
    pipeline.wait(lambda: _rows(pipeline, "SELECT count(*) FROM submissions")[0][0] == 1,
                  "alice's submission")

    # Signed by another key than the operator's: rejected, nothing changes.
    pipeline.send(t.registrations, uid_reassignment(eve, uid=0, hotkey=bob.hotkey, block=1500))
    pipeline.wait(lambda: len(_rejections(pipeline)) == 1, "the forged handover's rejection")
    code, message, _ = _rejections(pipeline)[0]
    assert code == "BAD_SIGNATURE"
    assert f"signed by {eve.hotkey[:16]}…, which is not the operator's key" in message

    # A handover backdated to before the holder's registration (block 1) is refused by the
    # command: nothing is published.
    backdated = pipeline.cli("operator", "reassign-uid", "--uid", "0", "--hotkey", bob.hotkey,
                             "--block", "1", "--key-file", str(operator_file))
    assert backdated.returncode == 2, backdated.stdout
    assert f"uid 0 is held by hotkey {alice.hotkey[:16]}… since block 1" in backdated.stderr

    # The operator's handover, through the command line.
    args = ["operator", "reassign-uid", "--uid", "0", "--hotkey", bob.hotkey, "--block", "2000",
            "--key-file", str(operator_file)]
    done = pipeline.cli(*args)
    assert done.returncode == 0, done.stderr
    assert f"reassigned uid=0 hotkey={bob.hotkey} block=2000" in done.stdout
    assert "event_id=" in done.stdout
    pipeline.wait(lambda: _miners(pipeline) == {alice.hotkey: None, bob.hotkey: 0,
                                                 carol.hotkey: 2}, "bob holds uid 0")
    assert _rows(pipeline, "SELECT block FROM miners WHERE hotkey = %s", (bob.hotkey,)) == [
        (2000,)]

    # A handover to a hotkey that holds another uid is refused; uid 0 stays bob's.
    pipeline.send(t.registrations, uid_reassignment(operator, uid=0, hotkey=carol.hotkey,
                                                    block=2500))
    pipeline.wait(lambda: len(_rejections(pipeline)) == 2, "the refused handover")
    code, message, hotkey = _rejections(pipeline)[1]
    assert (code, hotkey) == ("HOTKEY_HAS_OTHER_UID", carol.hotkey)
    assert f"uid 0 stays with hotkey {bob.hotkey[:16]}…" in message

    # The new hotkey submits for uid 0; the old one is turned away.
    pipeline.send(t.submissions, submission(bob, repo_namespace="bob", repo_name="b1",
                                            block=3000),
                  submission(alice, repo_namespace="alice", repo_name="a2", block=40_000))
    pipeline.wait(lambda: len(_rejections(pipeline)) == 3 and _rows(
        pipeline, "SELECT count(*) FROM submissions")[0][0] == 2, "bob's and alice's")
    assert _rows(pipeline, "SELECT hotkey, uid FROM submissions WHERE repo_name = 'b1'") == [
        (bob.hotkey, 0)]
    code, message, hotkey = _rejections(pipeline)[2]
    assert (code, hotkey) == ("UID_REASSIGNED", alice.hotkey)
    assert f"uid 0 was handed to hotkey {bob.hotkey[:16]}… at block 2000" in message

    # The same handover published again changes nothing; alice may not take uid 0 back.
    again = pipeline.cli(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout == done.stdout
    pipeline.send(t.registrations, registration(alice, uid=0, block=2600))
    pipeline.wait(lambda: len(_rejections(pipeline)) == 4, "alice's registration refused")
    assert _rejections(pipeline)[3][0] == "UID_TAKEN"
    assert _miners(pipeline) == {alice.hotkey: None, bob.hotkey: 0, carol.hotkey: 2}
    assert _rows(pipeline, "SELECT count(*) FROM dead_letters")[0][0] == 0
