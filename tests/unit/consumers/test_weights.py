"""SPEC §5 on hand-computed cases: wins, the later-block penalty, softmax, EMA, NaN → 0."""

from __future__ import annotations

import math

import pytest

from consumers.weights import ALPHA, Candidate, compute_weights, invalid_reasons, iswin

TOL = 1e-12


def done(uid: int, score: float, block: int, **kw: object) -> Candidate:
    """A COMPLETED submission of ``uid``."""
    fields = {"hash": str(1000 + uid), "repo": f"ns/m{uid}", "content_hash": f"w{uid}", **kw}
    return Candidate(uid=uid, hotkey=f"hk{uid}", block=block, status="COMPLETED", score=score,
                     **fields)  # type: ignore[arg-type]


def weights(entries) -> list[float]:
    return [e.weight for e in entries]


def softmax(*rates: float) -> list[float]:
    exps = [math.exp(r / 0.25) if r != -math.inf else 0.0 for r in rates]
    return [e / sum(exps) for e in exps]


def test_iswin_penalizes_the_later_block_and_a_tie_is_no_win() -> None:
    assert iswin(0.6, 0.5, 10, 20)
    assert iswin(0.50, 0.51, 100, 200)  # 0.51 × 0.97 = 0.4947 < 0.50: the penalty decides
    assert not iswin(0.51, 0.50, 200, 100)
    assert not iswin(0.5, 0.5, 7, 7)


def test_two_uids_the_better_one_takes_most() -> None:
    entries = compute_weights([done(1, 0.5, 20), done(0, 0.6, 10)], cutoff_block=100,
                              previous=None)
    assert [e.uid for e in entries] == [0, 1]
    assert [e.win_rate for e in entries] == [1.0, 0.0]
    expected = softmax(1.0, 0.0)  # first epoch: the step itself
    assert all(abs(w - x) < TOL for w, x in zip(weights(entries), expected, strict=True))
    assert abs(sum(weights(entries)) - 1) < TOL


def test_the_penalty_decides_a_close_match() -> None:
    entries = compute_weights([done(0, 0.50, 100), done(1, 0.51, 200)], cutoff_block=300,
                              previous=None)
    assert [e.win_rate for e in entries] == [1.0, 0.0]
    assert weights(entries)[0] > weights(entries)[1]


def test_a_tie_splits_evenly() -> None:
    entries = compute_weights([done(0, 0.5, 7), done(1, 0.5, 7)], cutoff_block=10,
                              previous=None)
    assert [e.win_rate for e in entries] == [0.0, 0.0]
    assert all(abs(w - 0.5) < TOL for w in weights(entries))


def test_the_moving_average_keeps_nine_tenths_of_the_previous_vector() -> None:
    previous = {0: 0.3, 1: 0.7}
    entries = compute_weights([done(0, 0.6, 10), done(1, 0.5, 20)], cutoff_block=100,
                              previous=previous)
    step = softmax(1.0, 0.0)
    expected = [ALPHA * previous[u] + (1 - ALPHA) * s for u, s in zip((0, 1), step, strict=True)]
    assert all(abs(w - x) < TOL for w, x in zip(weights(entries), expected, strict=True))
    # A uid new to the registry starts from 0.
    entries = compute_weights([done(0, 0.6, 10), done(1, 0.5, 20), done(2, 0.4, 30)],
                              cutoff_block=100, previous=previous)
    step = softmax(1.0, 0.5, 0.0)
    expected = [ALPHA * previous.get(u, 0.0) + (1 - ALPHA) * s
                for u, s in zip((0, 1, 2), step, strict=True)]
    assert all(abs(w - x) < TOL for w, x in zip(weights(entries), expected, strict=True))


def test_a_single_valid_uid_takes_everything() -> None:
    candidates = [
        done(0, 0.4, 10),
        Candidate(uid=1, hotkey="hk1"),  # registered, nothing submitted
        Candidate(uid=2, hotkey="hk2", hash="2", repo="ns/q", block=11, status="QUEUED"),
    ]
    entries = compute_weights(candidates, cutoff_block=100, previous=None)
    assert weights(entries) == [1.0, 0.0, 0.0]
    assert [e.win_rate for e in entries] == [1.0, None, None]
    assert entries[1].invalid == "no submission"
    assert entries[2].invalid == "not evaluated yet (QUEUED)"
    # Alone in the registry: no one to beat, win rate 0, and still the whole weight.
    (alone,) = compute_weights([done(5, 0.4, 10)], cutoff_block=100, previous=None)
    assert (alone.win_rate, alone.weight) == (0.0, 1.0)


def test_an_epoch_with_no_valid_uid_gives_zero_weights_even_after_a_vector() -> None:
    candidates = [
        Candidate(uid=0, hotkey="hk0", hash="1", repo="ns/a", block=5, status="RUNNING"),
        Candidate(uid=1, hotkey="hk1", hash="2", repo="ns/b", block=5, status="FAILED"),
        Candidate(uid=2, hotkey="hk2"),
    ]
    for previous in (None, {0: 0.5, 1: 0.25, 2: 0.25}):
        entries = compute_weights(candidates, cutoff_block=100, previous=previous)
        assert weights(entries) == [0.0, 0.0, 0.0]  # softmax of all -inf is NaN; NaN → 0
        assert all(e.win_rate is None for e in entries)
    assert compute_weights([], cutoff_block=1, previous=None) == []


def test_failed_is_zero_and_never_wins() -> None:
    entries = compute_weights(
        [done(0, 0.3, 10), Candidate(uid=1, hotkey="hk1", hash="9", repo="ns/f", block=5,
                                     status="FAILED")],
        cutoff_block=100, previous=None)
    assert [e.win_rate for e in entries] == [1.0, None]
    assert entries[1].invalid is None  # it competes, with 0
    assert weights(entries) == [1.0, 0.0]


@pytest.mark.parametrize(("same", "why"), [
    ({"repo": "ns/m0"}, "same repo"),
    ({"hash": "1000"}, "same hash"),
    ({"content_hash": "w0"}, "same weights"),
])
def test_the_later_duplicate_is_invalid(same: dict, why: str) -> None:
    entries = compute_weights([done(0, 0.4, 10), done(1, 0.9, 20, **same)], cutoff_block=100,
                              previous=None)
    assert entries[1].invalid == f"duplicate of uid 0 ({why}), submitted at block 10"
    assert weights(entries) == [1.0, 0.0]
    # The same block is no duplicate: neither came first.
    both = compute_weights([done(0, 0.4, 10), done(1, 0.9, 10, **same)], cutoff_block=100,
                           previous=None)
    assert [e.invalid for e in both] == [None, None]


def test_a_submission_after_the_cutoff_does_not_count() -> None:
    reasons = invalid_reasons([done(0, 0.4, 10), done(1, 0.9, 150)], cutoff_block=100)
    assert reasons == {1: "submitted at block 150, after the cutoff 100"}
    # ...and does not make an earlier one a duplicate either.
    assert invalid_reasons([done(0, 0.4, 10), done(1, 0.9, 150, repo="ns/m0")], 100) == {
        1: "submitted at block 150, after the cutoff 100"}
