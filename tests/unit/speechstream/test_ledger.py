"""The ledger, without Kafka: the registry, each uid's latest submission and how it stands
(what the validator weighs), one rule per question."""

from __future__ import annotations

import pytest

from consumers.validator import candidates
from consumers.weights import carried_over, compute_weights
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
    WeightEntry,
    WeightsComputed,
)
from speechstream.ledger import Ledger, score_text


def _hk(n: int) -> str:
    return f"{n:02x}" * 32


def _reg(hotkey: int, uid: int, block: int, event_id: str):
    return new_envelope(MinerRegistered(hotkey=_hk(hotkey), uid=uid, block=block,
                                        signature="cd" * 64),
                        key=None, producer="t", event_id=event_id)


def _req(hotkey: int, uid: int, h: str, block: int, repo: str = "m", version: str = "v2"):
    return new_envelope(EvaluationRequested(hash=h, hotkey=_hk(hotkey), uid=uid,
                                            repo_namespace="ns", repo_name=repo, block=block,
                                            scoring_version=version,
                                            source_event_id=f"s{h}{block}"),
                        key=h, producer="t", event_id=f"r{h}-{block}")


def test_each_uid_competes_with_its_holders_latest_submission() -> None:
    state = Ledger(default_version="v1")
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
                                   evaluator="e", request_event_id="r20-50", content_hash="w"),
                     key="20", producer="t"),
        new_envelope(ScoreComputed(hash="20", scoring_version="v2", status="COMPLETED",
                                   total_score=0.1, evaluator="e", request_event_id="r20-50"),
                     key="20", producer="t"),  # another scoring version: not this one
        new_envelope(ChainBlock(block=300), key=None, producer="t"),
        new_envelope(ChainBlock(block=250), key=None, producer="t"),  # the head never goes back
    ):
        state.apply(env)
    assert state.head == 300
    assert {u: h.hotkey for u, h in state.holders().items()} == {0: _hk(1), 1: _hk(2)}
    first, second = candidates(state)
    assert (first.uid, first.hash, first.block, first.repo, first.status, first.score) == (
        0, "11", 200, "ns/new", "RUNNING", None)
    assert (second.uid, second.hash, second.status, second.score, second.content_hash) == (
        1, "20", "COMPLETED", 0.7, "w")


def test_a_request_delivered_twice_keeps_its_earliest_block() -> None:
    state = Ledger(default_version="v1")
    state.apply(_reg(1, 0, 5, "a"))
    state.apply(_req(1, 0, "10", 300))
    state.apply(_req(1, 0, "10", 100))
    (only,) = candidates(state)
    assert (only.block, only.status) == (100, "QUEUED")


def test_an_activated_scoring_version_decides_which_scores_count() -> None:
    state = Ledger(default_version="v2")
    state.apply(_reg(1, 0, 5, "a"))
    state.apply(_req(1, 0, "10", 100, version="v1"))
    for version, total in (("v2", 0.4), ("v1", 0.9)):
        state.apply(new_envelope(ScoreComputed(hash="10", scoring_version=version,
                                               status="COMPLETED", total_score=total,
                                               evaluator="e", request_event_id="r10-100"),
                                 key="10", producer="t"))
    assert state.active_version == "v2"  # what new requests get
    assert candidates(state)[0].score == 0.9  # before any activation: its own version's
    state.apply(new_envelope(ScoringActivated(scoring_version="v1"), key="active",
                             producer="t"))
    assert state.active_version == "v1"
    assert candidates(state)[0].score == 0.9
    state.apply(new_envelope(ScoringActivated(scoring_version="v2"), key="active",
                             producer="t"))
    assert candidates(state)[0].score == 0.4


def test_a_handed_over_uid_counts_for_the_new_hotkey() -> None:
    old, new = "a" * 64, "b" * 64
    state = Ledger()
    state.apply(new_envelope(MinerRegistered(hotkey=old, uid=0, block=1, signature="0" * 128),
                             key=old, producer="t"))
    state.apply(new_envelope(UidHandover(uid=0, hotkey=new, previous=old, block=50,
                                         source_event_id="e"), key=new, producer="t"))
    assert {u: h.hotkey for u, h in state.holders().items()} == {0: old}  # revocation unread
    state.apply(new_envelope(UidRevoked(hotkey=old, uid=0, to=new, block=50,
                                        source_event_id="e"), key=old, producer="t"))
    assert {u: (h.hotkey, h.block) for u, h in state.holders().items()} == {0: (new, 50)}


def _cancel(request_event_id: str, h: str, hotkey: int, block: int):
    return new_envelope(EvaluationCancelled(
        hash=h, request_event_id=request_event_id, hotkey=_hk(hotkey), uid=0, block=block,
        code=RejectionCode.DUPLICATE_REPO, displaced_by="s11100", displaced_by_hash="11",
        reason="duplicate of ns/m submitted earlier at block 100 (hash 11)",
    ), key=h, producer="t")


def test_a_withdrawn_request_is_an_invalid_duplicate_even_when_scored() -> None:
    state = Ledger(default_version="v1")
    state.apply(_reg(1, 0, 5, "a"))
    # The holder (block 40,000, scored) is displaced by the same hotkey's earlier submission of
    # the repo under another config template (another hash): no other uid to compare with.
    holder = _req(1, 0, "10", 40_000)
    state.apply(holder)
    state.apply(new_envelope(ScoreComputed(hash="10", status="COMPLETED", total_score=0.8,
                                           evaluator="e", request_event_id=holder.event_id),
                             key="10", producer="t"))
    (only,) = candidates(state)
    assert only.withdrawn is None and only.status == "COMPLETED"
    # A cancellation of another request of the hash changes nothing...
    state.apply(_cancel("another-request", "10", 1, 40_000))
    assert candidates(state)[0].withdrawn is None
    # ...the holder's own makes it a withdrawn duplicate: FAILED, scoreless, counts for nothing
    # (its score stays on the log).
    state.apply(_cancel(holder.event_id, "10", 1, 40_000))
    (only,) = candidates(state)
    assert (only.hash, only.status, only.score) == ("10", "FAILED", None)
    assert state.score("10", "v2").total_score == 0.8
    assert only.withdrawn == "duplicate of ns/m submitted earlier at block 100 (hash 11)"
    (entry,) = compute_weights(candidates(state), cutoff_block=50_000, previous=None)
    assert entry.invalid == ("withdrawn: duplicate of ns/m submitted earlier at block 100 "
                             "(hash 11)")
    assert entry.weight == 0.0 and entry.win_rate is None


def test_the_earliest_block_holds_its_place_whatever_order_the_log_gave() -> None:
    late, early = _req(1, 0, "10", 300), _req(1, 0, "10", 100)
    for order in ((late, early), (early, late)):
        ledger = Ledger(default_version="v1")
        ledger.apply(_reg(1, 0, 5, "a"))
        for env in order:
            ledger.apply(env)
        assert ledger.accepted("10").event_id == early.event_id
        assert ledger.standing("10").block == 100
    # A withdrawn request gives its place to the earliest that is not.
    ledger.apply(_cancel(early.event_id, "10", 1, 100))
    assert ledger.accepted("10").event_id == late.event_id
    assert ledger.standing("10").withdrawn is None
    ledger.apply(_cancel(late.event_id, "10", 1, 300))
    standing = ledger.standing("10")
    assert (standing.block, standing.status, standing.score) == (100, "FAILED", None)
    assert standing.notes.startswith("withdrawn: duplicate of ns/m")


def test_the_first_score_and_the_first_cancellation_in_log_order_count() -> None:
    ledger = Ledger(default_version="v1")
    ledger.apply(_req(1, 0, "10", 100))
    for total in (0.3, 0.9):
        ledger.apply(new_envelope(ScoreComputed(hash="10", status="COMPLETED",
                                                total_score=total, evaluator="e",
                                                request_event_id="r10-100"),
                                  key="10", producer="t"))
    assert ledger.standing("10").score == 0.3
    assert ledger.has_score("10", "v2") and not ledger.has_score("10", "v1")


def test_equal_statuses_keep_the_smallest_event_id_and_a_lower_one_never_moves_it() -> None:
    ledger = Ledger(default_version="v1")
    ledger.apply(_req(1, 0, "10", 100))
    for event_id, status, note in (("b", "RUNNING", "second"), ("a", "RUNNING", "first"),
                                   ("0", "PRECHECK", "late")):
        ledger.apply(new_envelope(EvaluationStatusChanged(hash="10", status=status, note=note),
                                  key="10", producer="t", event_id=event_id))
    standing = ledger.standing("10")
    assert (standing.status, standing.notes) == ("RUNNING", "first")


def test_a_submission_awaiting_the_active_version_names_what_its_own_gave() -> None:
    ledger = Ledger(default_version="v1")
    ledger.apply(_req(1, 0, "10", 100))
    ledger.apply(new_envelope(ScoreComputed(hash="10", status="COMPLETED", total_score=0.61235,
                                            evaluator="e", request_event_id="r10-100"),
                              key="10", producer="t"))
    ledger.apply(new_envelope(ScoringActivated(scoring_version="v1"), key="active",
                              producer="t"))
    standing = ledger.standing("10")
    assert (standing.scoring_version, standing.status, standing.score) == ("v1", "QUEUED", None)
    assert standing.notes == "awaiting its v1 score (v2: COMPLETED 0.6124)"


def test_a_score_that_answers_no_request_of_its_hash_shows_nowhere() -> None:
    ledger = Ledger()
    ledger.apply(_req(1, 0, "10", 100))
    ledger.apply(_req(2, 1, "20", 100))

    def score(h: str, answers: str, rescore_of: str | None = None, total: float = 0.9):
        return new_envelope(ScoreComputed(hash=h, status="COMPLETED", total_score=total,
                                          evaluator="e", request_event_id=answers,
                                          rescore_of=rescore_of), key=h, producer="t")

    # Hash 10: a score naming another hash's request; then the real one, a late duplicate.
    ledger.apply(score("10", "r20-100"))
    ledger.apply(score("10", "r10-100", total=0.2))
    # Hash 30 was never requested; hash 20's score names its request as the one it re-scores.
    ledger.apply(score("30", "r30"))
    ledger.apply(score("20", "rescore", rescore_of="r20-100", total=0.5))
    assert ledger.score("10", "v2") is None and ledger.has_score("10", "v2")
    assert (ledger.standing("10").status, ledger.standing("10").score) == ("QUEUED", None)
    assert ledger.standing("30") is None and ledger.score("30", "v2") is None
    assert ledger.standing("20").score == 0.5


def test_scores_print_as_postgresql_rounds_them() -> None:
    assert score_text(0.5) == "0.5000"
    assert score_text(1.0) == "1.0000"
    assert score_text(0.0) == "0.0000"
    assert score_text(0.12345) == "0.1235"  # half away from zero, from 15 digits
    assert score_text(0.00005) == "0.0001"


def test_a_uid_handed_to_another_hotkey_starts_its_average_from_zero() -> None:
    old, new = "a" * 64, "b" * 64
    last = WeightsComputed.of("v", 1, 100, [
        WeightEntry(uid=0, hotkey=old, weight=0.7), WeightEntry(uid=1, hotkey=_hk(1), weight=0.3),
    ])
    ledger = Ledger(default_version="v1")
    ledger.apply(new_envelope(MinerRegistered(hotkey=_hk(1), uid=1, block=1,
                                              signature="0" * 128), key=None, producer="t"))
    ledger.apply(new_envelope(UidHandover(uid=0, hotkey=new, previous=old, block=50,
                                          source_event_id="e"), key=new, producer="t"))
    for hotkey, uid, h in ((new, 0, "20"), (_hk(1), 1, "21")):
        ledger.apply(new_envelope(EvaluationRequested(
            hash=h, hotkey=hotkey, uid=uid, repo_namespace="ns", repo_name=h, block=100,
            source_event_id=f"s{h}"), key=h, producer="t", event_id=f"r{h}"))
        ledger.apply(new_envelope(ScoreComputed(hash=h, status="COMPLETED", total_score=0.5,
                                                evaluator="e", request_event_id=f"r{h}"),
                                  key=h, producer="t"))
    now = candidates(ledger)
    assert carried_over(last, now) == {0: 0.0, 1: 0.3}
    assert carried_over(None, now) is None
    entries = compute_weights(now, cutoff_block=200, previous=carried_over(last, now))
    # Equal scores at the same block: neither wins, the step is 0.5 each.
    assert [e.weight for e in entries] == pytest.approx([0.1 * 0.5, 0.9 * 0.3 + 0.1 * 0.5])


def test_a_queued_status_event_of_an_older_log_counts_for_nothing() -> None:
    # Logs written before the request was the QUEUED have a QUEUED status event beside it: the
    # ledger (and the sink, sinks.rows) keeps one QUEUED per submission, the request's.
    from sinks.rows import rows_of

    queued = new_envelope(EvaluationStatusChanged(hash="10", status="QUEUED", note="routed"),
                          key="10", producer="t", event_id="0-older")
    ledger = Ledger(default_version="v2")
    ledger.apply(_req(1, 0, "10", 100))
    ledger.apply(queued)
    assert ledger.statuses["10", "v2"][1] == "r10-100"  # the request's, not the older one's
    assert (ledger.standing("10").status, ledger.standing("10").notes) == ("QUEUED", None)
    rows = rows_of([_req(1, 0, "10", 100), queued])
    assert [r[-2] for r in rows["queued"]] == ["r10-100"] and rows["status_events"] == []
