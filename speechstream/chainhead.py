"""The chain's head over time, as the records of ``chain.blocks`` tell it: a pure piece (no
Kafka) that the intake worker's :class:`streams.chain.ChainHead` feeds.

Two rules live here.

**The head as it stood at a moment.** Each head that raises the head is kept with the time its
record reached the broker (the topic's ``LogAppendTime``, in milliseconds): :meth:`HeadHistory.
at` answers the head as it stood at a given time, so a record judged late (a backlog) is judged
against the head of its own time, not today's. Heads only grow; the history is one pair of
64-bit integers per advance (about 42 MB for a year of 12-second blocks).

**A head that jumps implausibly far is refused.** A head may pass the previous accepted one by
at most ``slack_blocks`` plus twice what the time between their records allows at one block
per :data:`BLOCK_SECONDS` (:meth:`JumpLimit.allows`). A refused head changes nothing and is
counted (:attr:`HeadHistory.refused`); the heads after it are judged against the accepted one.
The first head published has no previous one: it is taken as it is (the chain adapter is the
only writer of ``chain.blocks``). A record without a timestamp counts as published at the time
of the previous accepted head (no time elapsed).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from typing import Literal

BLOCK_SECONDS = 12.0
"""The chain's block time."""
JUMP_RATE = 2.0
"""How many times the chain's own pace a head may advance (clock skew, a slow adapter catching
up)."""
JUMP_SLACK_BLOCKS = 300
"""The advance allowed with no time elapsed (one hour of blocks): an adapter restarted, or
publishing every few blocks."""

Offer = Literal["advanced", "kept", "refused"]


@dataclass(frozen=True)
class JumpLimit:
    """How far a head may pass the previous accepted head: ``slack_blocks`` plus ``rate``
    times one block per :data:`BLOCK_SECONDS` of the time between their records."""

    slack_blocks: int = JUMP_SLACK_BLOCKS
    rate: float = JUMP_RATE

    def most(self, previous: int, elapsed_ms: int) -> int:
        """The highest head allowed ``elapsed_ms`` after ``previous`` was published."""
        elapsed_s = max(0, elapsed_ms) / 1000.0
        return previous + self.slack_blocks + math.ceil(self.rate * elapsed_s / BLOCK_SECONDS)

    def allows(self, previous: int, elapsed_ms: int, block: int) -> bool:
        """Whether ``block`` may follow ``previous`` after ``elapsed_ms``."""
        return block <= self.most(previous, elapsed_ms)


class HeadHistory:
    """Every advance of the head with the time of its record (module docstring)."""

    def __init__(self, limit: JumpLimit | None = None) -> None:
        self.limit = limit or JumpLimit()
        self._times = array("q")
        self._heads = array("q")
        self.refused = 0
        """Heads refused for jumping too far."""

    @property
    def head(self) -> int | None:
        """The highest accepted head (None before the first)."""
        return self._heads[-1] if self._heads else None

    @property
    def since_ms(self) -> int | None:
        """The time of the record that raised the head to :attr:`head`."""
        return self._times[-1] if self._times else None

    def offer(self, block: int, time_ms: int | None) -> Offer:
        """A head published at ``time_ms``: ``advanced`` (a new head), ``kept`` (not above the
        head: nothing changes) or ``refused`` (it jumps too far: ignored, counted)."""
        head, since = self.head, self.since_ms
        if head is not None and block <= head:
            return "kept"
        if head is not None and since is not None:
            at = since if time_ms is None else time_ms
            if not self.limit.allows(head, at - since, block):
                self.refused += 1
                return "refused"
            time_ms = max(at, since)  # a broker clock that stepped back keeps the order
        self._times.append(0 if time_ms is None else time_ms)
        self._heads.append(block)
        return "advanced"

    def at(self, time_ms: int) -> int | None:
        """The head as it stood at ``time_ms``: the latest head published at or before it
        (None when none was)."""
        i = bisect_right(self._times, time_ms)
        return self._heads[i - 1] if i else None
