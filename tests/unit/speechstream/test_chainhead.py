"""The chain head's history (the head as it stood at a time) and its jump rule; and how the
intake reads a record's time and judges a claim with them."""

from __future__ import annotations

from schemas.fields import RejectionCode
from schemas.topics import ALL_TOPICS
from speechstream.chainhead import BLOCK_SECONDS, HeadHistory, JumpLimit
from streams.chain import LOG_APPEND_TIME, appended_ms, judge_claim
from streams.rules import Rejection, check_block

MIN = 60_000  # ms


def test_the_history_answers_the_head_as_it_stood_at_a_time() -> None:
    history = HeadHistory()
    assert history.head is None and history.at(10**12) is None
    assert history.offer(1000, 1 * MIN) == "advanced"
    assert history.offer(1000, 2 * MIN) == "kept"  # the same head again
    assert history.offer(990, 3 * MIN) == "kept"  # the head never goes back
    assert history.offer(1010, 4 * MIN) == "advanced"
    assert history.head == 1010 and history.since_ms == 4 * MIN
    assert history.at(1 * MIN - 1) is None  # before the first head
    assert history.at(1 * MIN) == 1000
    assert history.at(3 * MIN) == 1000  # "kept" heads left no entry
    assert history.at(4 * MIN - 1) == 1000
    assert history.at(4 * MIN) == 1010 and history.at(10**12) == 1010


def test_a_head_that_jumps_too_far_is_refused() -> None:
    limit = JumpLimit(slack_blocks=300, rate=2.0)
    assert limit.most(1000, 0) == 1300
    assert limit.most(1000, int(60 * BLOCK_SECONDS * 1000)) == 1300 + 120  # 60 blocks, twice
    assert limit.allows(1000, -5_000, 1300)  # a clock that stepped back counts no time
    history = HeadHistory(limit)
    # The first head has no previous one: taken as it is.
    assert history.offer(5_000_000, 0) == "advanced"
    # A forged far head (a moment later) is ignored, and counted; it leaves no trace.
    assert history.offer(4_000_000_000, 1_000) == "refused"
    assert history.head == 5_000_000 and history.refused == 1 and history.at(2_000) == 5_000_000
    # An honest advance after it is judged against the accepted head.
    assert history.offer(5_000_300, 1_000) == "advanced"
    assert history.offer(5_000_601, 1_000) == "refused"
    # A day without heads (an adapter down) allows a day of blocks, twice over.
    day_ms = 24 * 3600 * 1000
    assert history.offer(5_000_300 + 7200, 1_000 + day_ms) == "advanced"
    # A record without a timestamp counts as published with the previous head.
    assert history.offer(5_007_500 + 301, None) == "refused"
    assert history.offer(5_007_500 + 300, None) == "advanced"
    assert history.at(2 * day_ms) == 5_007_800


def test_only_the_broker_s_append_time_dates_a_record() -> None:
    assert appended_ms(1_700_000_000.5, LOG_APPEND_TIME) == 1_700_000_000_500
    assert appended_ms(1_700_000_000.5, 0) is None  # CreateTime: the producer's choice
    assert appended_ms(None, LOG_APPEND_TIME) is None
    assert appended_ms(-0.001, LOG_APPEND_TIME) is None


class _Chain:
    """What judge_claim asks of a ChainHead, with a head published after the last refresh."""

    def __init__(self) -> None:
        self.history = HeadHistory()
        self.history.offer(1000, 1 * MIN)
        self.history.offer(1200, 5 * MIN)
        self.unread = 1300
        self.catch_ups = 0

    def refresh(self) -> int | None:
        return self.history.head

    def catch_up(self) -> int | None:
        self.catch_ups += 1
        self.history.offer(self.unread, 6 * MIN)
        return self.history.head

    def head_then(self, appended: int | None) -> int | None:
        return self.history.head if appended is None else self.history.at(appended)


def _judge(chain: _Chain | None, block: int, appended: int | None) -> Rejection | None:
    return judge_claim(chain, block, appended,  # type: ignore[arg-type]
                       lambda head, then: check_block(block, None, head, head_then=then,
                                                      window=25))


def test_a_claim_is_judged_by_the_head_of_its_time_and_caught_up_when_ahead() -> None:
    chain = _Chain()
    assert _judge(chain, 990, 2 * MIN) is None  # a backlog: the head then was 1000
    too_old = _judge(chain, 990, 5 * MIN)
    assert too_old is not None and too_old.code is RejectionCode.BLOCK_TOO_OLD
    assert "(block 1200)" in too_old.message and chain.catch_ups == 0
    # A record whose time is its producer's: judged by the head now.
    assert _judge(chain, 1000, None).code is RejectionCode.BLOCK_TOO_OLD
    # Ahead of the head read so far: read to the end, then judged again.
    assert _judge(chain, 1290, 6 * MIN) is None and chain.catch_ups == 1
    # Without a chain (no chain feed), no bound.
    assert _judge(None, 0, 6 * MIN) is None


def test_the_miners_entry_topics_and_the_chain_are_stamped_by_the_broker() -> None:
    stamped = {spec.name for spec in ALL_TOPICS
               if spec.config().get("message.timestamp.type") == "LogAppendTime"}
    assert stamped == {"registrations", "submissions", "chain.blocks"}
