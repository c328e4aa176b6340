"""The validator on a real broker: scores and head blocks in, weights vectors out, every epoch;
a restart rebuilds the moving average from the weights topic; the sink keeps the vectors."""

from __future__ import annotations

import json
import math

import pytest

from consumers.weights import ALPHA
from schemas import EvaluationRequested, MinerRegistered, ScoreComputed, new_envelope
from schemas.events import ChainBlock, WeightsComputed

pytestmark = pytest.mark.integration

VALIDATOR = {"SPEECHSTREAM_VALIDATOR_VALIDATOR_ID": "val-a",
             "SPEECHSTREAM_VALIDATOR_EPOCH_BLOCKS": "100"}


def _hotkey(uid: int) -> str:
    return f"{uid:02x}" * 32


def _registered(uid: int):
    return new_envelope(MinerRegistered(hotkey=_hotkey(uid), uid=uid, block=1,
                                        signature="cd" * 64), key=_hotkey(uid), producer="t")


def _request(uid: int, block: int, repo: str, h: str | None = None):
    # The event id _score names: a score counts only where it answers a request of its hash.
    event_id = f"r{uid}" if h is None else f"r{h}"
    h = h or str(1000 + uid)
    return new_envelope(EvaluationRequested(
        hash=h, hotkey=_hotkey(uid), uid=uid, repo_namespace="ns", repo_name=repo, block=block,
        source_event_id=f"s{uid}", scoring_version="v2"), key=h, producer="t",
        event_id=event_id)


def _score(uid: int, total: float | None, weights: str):
    h = str(1000 + uid)
    done = ScoreComputed(hash=h, status="COMPLETED" if total is not None else "FAILED",
                         total_score=total, reason=None if total is not None else "broken",
                         evaluator="e", request_event_id=f"r{uid}", content_hash=weights,
                         scoring_version="v2")
    return new_envelope(done, key=h, producer="t")


def _tick(pipeline, block: int) -> None:
    done = pipeline.cli("chain", "tick", "--block", str(block))
    assert done.returncode == 0, done.stderr


def _vectors(pipeline, n: int) -> list[WeightsComputed]:
    found = [e.payload for e in pipeline.read(pipeline.kafka.topics.weights, n)]
    assert len(found) == n, [v.epoch for v in found]  # type: ignore[union-attr]
    return found  # type: ignore[return-value]


def _softmax(*rates: float) -> list[float]:
    exps = [0.0 if r == -math.inf else math.exp(r / 0.25) for r in rates]
    return [e / sum(exps) for e in exps]


def _close(got: list[float], want: list[float]) -> bool:
    return all(abs(a - b) < 1e-12 for a, b in zip(got, want, strict=True))


def test_weights_every_epoch_and_after_a_restart(pipeline) -> None:
    t = pipeline.kafka.topics
    pipeline.send(t.miners, *(_registered(uid) for uid in range(4)))
    pipeline.send(t.evaluation_requests, _request(0, 10, "a"), _request(1, 20, "b"),
                  _request(2, 30, "c"))
    pipeline.send(t.scores, _score(0, 0.6, "w0"), _score(1, 0.5, "w1"), _score(2, None, "w2"))
    sink = pipeline.start("sink", ["sink", "run"])
    validator = pipeline.start("validator", ["validator", "run"], **VALIDATOR)
    _tick(pipeline, 150)  # epoch 1
    (first,) = _vectors(pipeline, 1)
    assert (first.validator, first.epoch, first.block) == ("val-a", 1, 150)
    assert first.uids == [0, 1, 2, 3]
    # uid 0 beats 1 (0.5 × 0.97 < 0.6) and 2 (FAILED: 0) and 3 (no submission); uid 1 beats 2
    # and 3. Win rates over the 3 others: 1, 2/3; uid 2 and 3 do not compete (-inf).
    assert [e.win_rate for e in first.entries] == [1.0, 2 / 3, None, None]
    assert [e.invalid for e in first.entries] == [None, None, None, "no submission"]
    step1 = _softmax(1.0, 2 / 3, -math.inf, -math.inf)
    assert _close(first.weights, step1) and abs(sum(first.weights) - 1) < 1e-12

    # uid 3 submits the same weights as uid 0, later: a duplicate. Epoch 2 averages.
    pipeline.send(t.evaluation_requests, _request(3, 40, "d"))
    pipeline.send(t.scores, _score(3, 0.9, "w0"))
    _tick(pipeline, 260)
    second = _vectors(pipeline, 2)[1]
    assert second.epoch == 2
    assert second.entries[3].invalid == "duplicate of uid 0 (same weights), submitted at block 10"
    assert _close(second.weights, [ALPHA * a + (1 - ALPHA) * b
                                   for a, b in zip(first.weights, step1, strict=True)])

    # A restart rebuilds the average from the weights topic, and does not redo epoch 2.
    validator.stop()
    pipeline.start("validator", ["validator", "run"], **VALIDATOR)
    _tick(pipeline, 299)
    pipeline.send(t.evaluation_requests, _request(2, 290, "e", h="2290"))  # not scored yet
    _tick(pipeline, 305)  # epoch 3
    vectors = _vectors(pipeline, 3)
    assert [v.epoch for v in vectors] == [1, 2, 3]
    third = vectors[2]
    assert third.entries[2].status == "QUEUED"
    assert third.entries[2].invalid == "not evaluated yet (QUEUED)"
    step3 = _softmax(1.0, 2 / 3, -math.inf, -math.inf)  # uid 2 and 3 out, as before
    assert _close(third.weights, [ALPHA * a + (1 - ALPHA) * b
                                  for a, b in zip(second.weights, step3, strict=True)])

    shown = pipeline.cli("validator", "weights", "--json", **VALIDATOR)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["epoch"] == 3
    table = pipeline.cli("validator", "weights", **VALIDATOR).stdout
    assert "epoch 3, block 305" in table and "ns/a" in table and "sum of weights" in table

    # The sink keeps every vector, entry by entry, and each uid's current submission.
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM weights")[0][0] == 3,
                  "three vectors in PostgreSQL")
    rows = pipeline.query("SELECT uid, weight FROM weight_entries WHERE epoch = 3 ORDER BY uid")
    assert _close([w for _, w in rows], third.weights)
    board = pipeline.query("SELECT uid, hash, block FROM minerboard ORDER BY uid")
    assert board == [(0, "1000", 10), (1, "1001", 20), (2, "2290", 290), (3, "1003", 40)]
    sink.stop()


def test_heads_before_any_vector_run_one_epoch_not_one_per_head(pipeline) -> None:
    t = pipeline.kafka.topics
    pipeline.send(t.miners, _registered(0))
    pipeline.send(t.chain_blocks, *(new_envelope(ChainBlock(block=b), key=None, producer="t")
                                    for b in (50, 120, 230, 340)))
    pipeline.start("validator", ["validator", "run"], **VALIDATOR)
    (only,) = _vectors(pipeline, 1)
    assert (only.epoch, only.block) == (3, 340)  # the head's epoch, once
    assert only.weights == [0.0] and only.entries[0].invalid == "no submission"
