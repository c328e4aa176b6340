"""SPEC §5: the weights a validator sets at one epoch, from each uid's latest submission.

Pure functions, no Kafka: ``compute_weights`` takes what the validator knows of every
registered uid and the previous vector, and returns one entry per uid, in uid order.

1. A uid competes with its latest submission unless it is invalid this epoch: it has none;
   it was submitted after the epoch's cutoff block; it is not evaluated yet (QUEUED, PRECHECK,
   RUNNING); or it duplicates an earlier submission of another uid (same repo, same hash, or
   byte-identical weights: the same safetensors content hash), the later block losing; or its
   evaluation was withdrawn because an earlier duplicate displaced it at intake (whatever
   its score). The reason an entry gives is cut to :data:`MAX_INVALID` characters.
2. Its score: COMPLETED → the total score; FAILED → 0; invalid → 0.
3. ``iswin(i, j)``: the later block's score is multiplied by ``1 - 0.03``; i wins if its
   adjusted score is strictly greater. ``win_rate(i) = wins / (number of uids - 1)``; an
   invalid or zero-score uid gets ``-inf``.
4. ``step = softmax(win_rate / 0.25)``, normalized; ``weights = 0.9 * previous + 0.1 * step``
   with NaN → 0. A validator's first epoch has no previous vector: it starts from ``step``.
   A uid whose hotkey changed since the previous vector (a handover) starts from 0: the new
   miner inherits nothing of the old one's average (:func:`carried_over`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from schemas.events import MAX_INVALID_REASON, WeightEntry, WeightsComputed
from schemas.fields import FINAL_RANK, STATUS_RANK

ALPHA = 0.9
"""Weight of the previous vector in the moving average."""
TEMPERATURE = 0.25
"""Softmax temperature over the win rates."""
LATER_BLOCK_PENALTY = 0.03
"""The later of two submissions competes with its score times ``1 - LATER_BLOCK_PENALTY``."""
NO_BLOCK = sys.maxsize
"""The block of a uid without a submission (it never wins, but others compare to it)."""
MAX_INVALID = MAX_INVALID_REASON
"""An entry's ``invalid`` reason is cut to this many characters (the most ``WeightEntry``
holds): a cancellation's reason (up to 2,000) no longer breaks the entry, and a vector of 4,096
uids stays within ``schemas.codec.MAX_VECTOR_BYTES``."""


@dataclass(frozen=True)
class Candidate:
    """What a validator knows of one registered uid at an epoch: its latest submission."""

    uid: int
    hotkey: str | None = None
    hash: str | None = None
    repo: str | None = None
    block: int | None = None
    status: str | None = None
    score: float | None = None
    content_hash: str | None = None
    withdrawn: str | None = None
    """Why its evaluation request was withdrawn (a duplicate of an earlier submission)."""


def clip(text: str, limit: int = MAX_INVALID) -> str:
    """``text``, cut to ``limit`` characters (the last one ``…``) when it is longer."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def iswin(score_i: float, score_j: float, block_i: int, block_j: int) -> bool:
    """Whether i beats j: the later submission's score is penalized, a tie is no win."""
    if block_i > block_j:
        score_i *= 1 - LATER_BLOCK_PENALTY
    if block_j > block_i:
        score_j *= 1 - LATER_BLOCK_PENALTY
    return score_i > score_j


def invalid_reasons(candidates: Sequence[Candidate], cutoff_block: int) -> dict[int, str]:
    """Why each invalid uid does not compete this epoch (uids that do are absent)."""
    reasons: dict[int, str] = {}
    submitted = []
    for c in candidates:
        if c.hash is None or c.block is None:
            reasons[c.uid] = "no submission"
        elif c.block > cutoff_block:
            reasons[c.uid] = f"submitted at block {c.block}, after the cutoff {cutoff_block}"
        else:
            submitted.append(c)
            if c.withdrawn is not None:
                reasons[c.uid] = clip(f"withdrawn: {c.withdrawn}")
            elif c.status is None or STATUS_RANK[c.status] < FINAL_RANK:
                reasons[c.uid] = f"not evaluated yet ({c.status or 'unknown'})"
    for later in submitted:
        earlier = [
            (c.block, c.uid, same) for c in submitted
            if c.uid != later.uid and c.block < later.block  # type: ignore[operator]
            and (same := _same(c, later)) is not None
        ]
        if earlier and later.uid not in reasons:
            block, uid, same = min(earlier)
            reasons[later.uid] = f"duplicate of uid {uid} ({same}), submitted at block {block}"
    return reasons


def _same(a: Candidate, b: Candidate) -> str | None:
    if a.hash == b.hash:
        return "same hash"
    if a.repo == b.repo:
        return "same repo"
    if a.content_hash is not None and a.content_hash == b.content_hash:
        return "same weights"
    return None


def carried_over(last: WeightsComputed | None,
                 candidates: Sequence[Candidate]) -> dict[int, float] | None:
    """The previous weight each uid carries into the moving average: its weight in ``last``
    while the same hotkey holds it; 0 for a uid handed to another hotkey since (or new).
    None when there is no previous vector (the first epoch starts from the step)."""
    if last is None:
        return None
    before = {e.uid: e for e in last.entries}
    out = {}
    for c in candidates:
        entry = before.get(c.uid)
        out[c.uid] = entry.weight if entry is not None and entry.hotkey == c.hotkey else 0.0
    return out


def compute_weights(
    candidates: Sequence[Candidate],
    *,
    cutoff_block: int,
    previous: Mapping[int, float] | None,
) -> list[WeightEntry]:
    """The weights of every candidate uid (module docstring), in uid order."""
    ordered = sorted(candidates, key=lambda c: c.uid)
    reasons = invalid_reasons(ordered, cutoff_block)
    scores = [
        0.0 if c.uid in reasons else (c.score or 0.0) if c.status == "COMPLETED" else 0.0
        for c in ordered
    ]
    blocks = [NO_BLOCK if c.block is None else c.block for c in ordered]
    n = len(ordered)
    rates: list[float] = []
    for i, c in enumerate(ordered):
        if c.uid in reasons or scores[i] == 0:
            rates.append(-math.inf)
            continue
        wins = sum(iswin(scores[i], scores[j], blocks[i], blocks[j]) for j in range(n) if j != i)
        rates.append(wins / (n - 1) if n > 1 else 0.0)
    step = _softmax([r / TEMPERATURE for r in rates])
    weights = []
    for c, s in zip(ordered, step, strict=True):
        before = s if previous is None else previous.get(c.uid, 0.0)
        w = ALPHA * before + (1 - ALPHA) * s
        weights.append(0.0 if math.isnan(w) else w)
    return [
        WeightEntry(
            uid=c.uid, hotkey=c.hotkey, hash=c.hash, repo=c.repo, block=c.block,
            status=c.status, score=c.score, content_hash=c.content_hash,  # type: ignore[arg-type]
            win_rate=None if math.isinf(r) else r, invalid=reasons.get(c.uid),
            weight=min(1.0, w),
        )
        for c, r, w in zip(ordered, rates, weights, strict=True)
    ]


def _softmax(values: list[float]) -> list[float]:
    """Softmax, normalized to sum 1; all NaN when every value is ``-inf`` (SPEC: NaN → 0)."""
    if not values:
        return []
    top = max(values)
    if top == -math.inf:
        return [math.nan] * len(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]
