"""What the validator makes of the log, without Kafka: the registry, each uid's latest
submission and how it stands."""

from __future__ import annotations

from consumers.validator import ValidatorState
from consumers.weights import compute_weights
from schemas import (
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerRegistered,
    ScoreComputed,
    new_envelope,
)
from schemas.events import (
    ChainBlock,
    EvaluationCancelled,
    RejectionCode,
    ScoringActivated,
    UidHandover,
    UidRevoked,
)


def _hk(n: int) -> str:
    return f"{n:02x}" * 32


def _reg(hotkey: int, uid: int, block: int, event_id: str):
    return new_envelope(MinerRegistered(hotkey=_hk(hotkey), uid=uid, block=block,
                                        signature="cd" * 64),
                        key=None, producer="t", event_id=event_id)


def _req(hotkey: int, uid: int, h: str, block: int, repo: str = "m"):
    return new_envelope(EvaluationRequested(hash=h, hotkey=_hk(hotkey), uid=uid,
                                            repo_namespace="ns", repo_name=repo, block=block,
                                            source_event_id=f"s{h}{block}"),
                        key=h, producer="t")


def test_each_uid_competes_with_its_holders_latest_submission() -> None:
    state = ValidatorState(scoring_version="v1")
    for env in (
        _reg(1, 0, 5, "a"), _reg(2, 1, 5, "b"),
        _reg(3, 1, 9, "c"),  # a later claim of uid 1 by another hotkey does not take it
        _req(1, 0, "10", 100, "old"), _req(1, 0, "11", 200, "new"),
        _req(2, 1, "20", 50),
        new_envelope(EvaluationStatusChanged(hash="11", status="RUNNING"), key="11",
                     producer="t"),
        new_envelope(EvaluationStatusChanged(hash="11", status="PRECHECK"), key="11",
                     producer="t"),  # late, lower: ignored
        new_envelope(ScoreComputed(hash="20", status="COMPLETED", total_score=0.7,
                                   evaluator="e", request_event_id="r", content_hash="w"),
                     key="20", producer="t"),
        new_envelope(ScoreComputed(hash="20", scoring_version="v2", status="COMPLETED",
                                   total_score=0.1, evaluator="e", request_event_id="r"),
                     key="20", producer="t"),  # another scoring version: not this one
        new_envelope(ChainBlock(block=300), key=None, producer="t"),
        new_envelope(ChainBlock(block=250), key=None, producer="t"),  # the head never goes back
    ):
        state.apply(env)
    assert state.head == 300
    assert state.uids() == {0: _hk(1), 1: _hk(2)}
    first, second = state.candidates()
    assert (first.uid, first.hash, first.block, first.repo, first.status, first.score) == (
        0, "11", 200, "ns/new", "RUNNING", None)
    assert (second.uid, second.hash, second.status, second.score, second.content_hash) == (
        1, "20", "COMPLETED", 0.7, "w")


def test_a_request_delivered_twice_keeps_its_earliest_block() -> None:
    state = ValidatorState(scoring_version="v1")
    state.apply(_reg(1, 0, 5, "a"))
    state.apply(_req(1, 0, "10", 300))
    state.apply(_req(1, 0, "10", 100))
    (only,) = state.candidates()
    assert (only.block, only.status) == (100, "QUEUED")


def test_an_activated_scoring_version_decides_which_scores_count() -> None:
    state = ValidatorState(scoring_version="v2")
    state.apply(_reg(1, 0, 5, "a"))
    state.apply(_req(1, 0, "10", 100))
    for version, total in (("v2", 0.4), ("v1", 0.9)):
        state.apply(new_envelope(ScoreComputed(hash="10", scoring_version=version,
                                               status="COMPLETED", total_score=total,
                                               evaluator="e", request_event_id="r"),
                                 key="10", producer="t"))
    assert state.active_version == "v2"
    assert state.candidates()[0].score == 0.4
    state.apply(new_envelope(ScoringActivated(scoring_version="v1"), key="active",
                             producer="t"))
    assert state.active_version == "v1"
    assert state.candidates()[0].score == 0.9
    # Activated with no score of it yet: the submission counts as not scored.
    state.apply(new_envelope(ScoringActivated(scoring_version="v3"), key="active",
                             producer="t"))
    only = state.candidates()[0]
    assert (only.score, only.status) == (None, "QUEUED")


def test_a_handed_over_uid_counts_for_the_new_hotkey() -> None:
    old, new = "a" * 64, "b" * 64
    state = ValidatorState()
    state.apply(new_envelope(MinerRegistered(hotkey=old, uid=0, block=1, signature="0" * 128),
                             key=old, producer="t"))
    state.apply(new_envelope(UidHandover(uid=0, hotkey=new, previous=old, block=50,
                                         source_event_id="e"), key=new, producer="t"))
    assert state.uids() == {0: old}  # the revocation not read yet
    state.apply(new_envelope(UidRevoked(hotkey=old, uid=0, to=new, block=50,
                                        source_event_id="e"), key=old, producer="t"))
    assert state.uids() == {0: new}


def _cancel(request_event_id: str, h: str, hotkey: int, block: int):
    return new_envelope(EvaluationCancelled(
        hash=h, request_event_id=request_event_id, hotkey=_hk(hotkey), uid=0, block=block,
        code=RejectionCode.DUPLICATE_REPO, displaced_by="s11100", displaced_by_hash="11",
        reason="duplicate of ns/m submitted earlier at block 100 (hash 11)",
    ), key=h, producer="t")


def test_a_withdrawn_request_is_an_invalid_duplicate_even_when_scored() -> None:
    state = ValidatorState(scoring_version="v1")
    state.apply(_reg(1, 0, 5, "a"))
    # The holder (block 40,000, scored) is displaced by the same hotkey's earlier submission of
    # the repo under another config template (another hash): no other uid to compare with.
    holder = _req(1, 0, "10", 40_000)
    state.apply(holder)
    state.apply(new_envelope(ScoreComputed(hash="10", status="COMPLETED", total_score=0.8,
                                           evaluator="e", request_event_id=holder.event_id),
                             key="10", producer="t"))
    (only,) = state.candidates()
    assert only.withdrawn is None and only.status == "COMPLETED"
    # A cancellation of another request of the hash changes nothing...
    state.apply(_cancel("another-request", "10", 1, 40_000))
    assert state.candidates()[0].withdrawn is None
    # ...the holder's own makes it a withdrawn duplicate: it keeps its score, counts for nothing.
    state.apply(_cancel(holder.event_id, "10", 1, 40_000))
    (only,) = state.candidates()
    assert (only.hash, only.status, only.score) == ("10", "COMPLETED", 0.8)
    assert only.withdrawn == "duplicate of ns/m submitted earlier at block 100 (hash 11)"
    (entry,) = compute_weights(state.candidates(), cutoff_block=50_000, previous=None)
    assert entry.invalid == ("withdrawn: duplicate of ns/m submitted earlier at block 100 "
                             "(hash 11)")
    assert entry.weight == 0.0 and entry.win_rate is None
