"""Which errors the sink outlives: a transient fault is retried, a fatal one ends the sink.

:func:`classify` looks through an error's chain (``raise … from exc``) for the psycopg or
confluent-kafka error underneath and sorts it into a :class:`Fault`; :class:`Backoff` spaces
the retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import psycopg
from confluent_kafka import KafkaError, KafkaException


class Fault(StrEnum):
    """What to do about an error."""

    TRANSIENT = "transient"
    """The database or the broker is away for a while: wait, then try the same step again."""
    LOST = "lost"
    """The consumer lost its partitions (a rebalance, its session or poll interval expired):
    its offsets cannot be committed; the partitions' next owner (maybe itself, rejoined)
    replays the batch from the last committed offset, idempotently."""
    FATAL = "fatal"
    """Retrying cannot help (credentials, a missing table or column, a bug): stop."""


# The broker's group coordinator moved, is loading or is away; the broker is unreachable.
TRANSIENT_KAFKA = frozenset({
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
    KafkaError.REQUEST_TIMED_OUT, KafkaError._TIMED_OUT,
})
# The group moved on without this member: committing again cannot succeed.
LOST_KAFKA = frozenset({
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID, KafkaError._ASSIGNMENT_LOST, KafkaError._MAX_POLL_EXCEEDED,
    KafkaError._NO_OFFSET,
})
# SQLSTATEs of a server that is away or restarting (class 08: connection exception; 57P0x:
# shut down, crashed, starting up) or of a transaction worth running again.
TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01", "53300"})
# What libpq says (without a SQLSTATE) when a connection is refused for good.
FATAL_CONNECT_MESSAGES = (
    "authentication failed", "does not exist", "pg_hba.conf", "no password supplied",
    "permission denied",
)


POISON_SQLSTATE_CLASSES = ("22", "23", "54")
"""Data exceptions, integrity violations, program limits: what one record's values can cause."""


def is_poison(exc: BaseException) -> bool:
    """Whether ``exc`` is what a record's own values cause (a value PostgreSQL cannot hold, a
    number out of range, a NUL byte in text): writing it again fails again, whatever the
    database's state, so the record is set aside instead of retried."""
    for cause in _chain(exc):
        if isinstance(cause, OverflowError):
            return True
        if isinstance(cause, psycopg.Error):
            state = cause.sqlstate
            return state is not None and state[:2] in POISON_SQLSTATE_CLASSES
    return False


def classify(exc: BaseException) -> Fault:
    """The fault of ``exc``, after the first psycopg or Kafka error among it and its causes
    (``raise … from``); an error with neither underneath is fatal."""
    for cause in _chain(exc):
        if isinstance(cause, KafkaException):
            error = cause.args[0] if cause.args else None
            return _kafka_fault(error) if isinstance(error, KafkaError) else Fault.FATAL
        if isinstance(cause, psycopg.Error):
            return _postgres_fault(cause)
    return Fault.FATAL


def _kafka_fault(error: KafkaError) -> Fault:
    if error.fatal():
        return Fault.FATAL
    if error.code() in LOST_KAFKA:
        return Fault.LOST
    if error.retriable() or error.code() in TRANSIENT_KAFKA:
        return Fault.TRANSIENT
    return Fault.FATAL


def _postgres_fault(error: psycopg.Error) -> Fault:
    state = error.sqlstate
    if state is not None:
        transient = state.startswith("08") or state in TRANSIENT_SQLSTATES
        return Fault.TRANSIENT if transient else Fault.FATAL
    # No SQLSTATE: the connection failed or was lost before the server could answer.
    if isinstance(error, psycopg.OperationalError):
        message = str(error).lower()
        if not any(marker in message for marker in FATAL_CONNECT_MESSAGES):
            return Fault.TRANSIENT
    return Fault.FATAL


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors it was raised from (``__cause__``, not mere context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: ``first_s``, doubled after each failure, at most ``cap_s``."""

    first_s: float = 0.5
    cap_s: float = 10.0

    def delay_s(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row (1, 2, …)."""
        return min(self.cap_s, self.first_s * 2 ** max(0, failures - 1))
