"""Which errors the sink retries (transient), leaves to a replay (lost) or dies of (fatal)."""

from __future__ import annotations

import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException

from sinks.exceptions import SinkError
from sinks.faults import Backoff, Fault, classify
from speechstream.exceptions import ConsumeError


def _sink_error(cause: BaseException) -> SinkError:
    try:
        raise SinkError(f"batch of 270 events not written: {cause}") from cause
    except SinkError as exc:
        return exc


def _commit_error(code: int, **flags: bool) -> ConsumeError:
    try:
        raise ConsumeError("committing offsets failed") from KafkaException(
            KafkaError(code, "from the broker", **flags))
    except ConsumeError as exc:
        return exc


@pytest.mark.parametrize("cause", [
    psycopg.OperationalError("consuming input failed: server closed the connection "
                             "unexpectedly"),
    psycopg.OperationalError("connection failed: connection to server at \"127.0.0.1\", port "
                             "5432 failed: Connection refused"),
    psycopg.OperationalError("the connection is closed"),
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
    psycopg.errors.CrashShutdown("terminating connection due to unexpected postmaster exit"),
    psycopg.errors.CannotConnectNow("the database system is starting up"),
    psycopg.errors.ConnectionFailure("connection failure"),
    psycopg.errors.SerializationFailure("could not serialize access"),
    psycopg.errors.DeadlockDetected("deadlock detected"),
], ids=lambda e: type(e).__name__)
def test_a_database_that_is_away_is_transient(cause: psycopg.Error) -> None:
    assert classify(_sink_error(cause)) is Fault.TRANSIENT


@pytest.mark.parametrize("cause", [
    psycopg.OperationalError('connection failed: FATAL:  password authentication failed for '
                             'user "speechstream"'),
    psycopg.OperationalError('connection failed: FATAL:  role "nobody" does not exist'),
    psycopg.OperationalError('connection failed: FATAL:  no pg_hba.conf entry for host'),
    psycopg.errors.InvalidPassword("password authentication failed"),
    psycopg.errors.InvalidAuthorizationSpecification("role does not exist"),
    psycopg.errors.InvalidCatalogName('database "x" does not exist'),
    psycopg.errors.UndefinedTable('relation "scores" does not exist'),
    psycopg.errors.UndefinedColumn('column "uid" does not exist'),
    psycopg.errors.NumericValueOutOfRange("integer out of range"),
    psycopg.ProgrammingError("a bug"),
], ids=lambda e: type(e).__name__)
def test_credentials_a_missing_schema_and_bad_data_are_fatal(cause: psycopg.Error) -> None:
    assert classify(_sink_error(cause)) is Fault.FATAL


@pytest.mark.parametrize("code", [
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
    KafkaError.REQUEST_TIMED_OUT, KafkaError._TIMED_OUT,
])
def test_a_broker_that_is_away_is_transient(code: int) -> None:
    assert classify(_commit_error(code)) is Fault.TRANSIENT


def test_a_retriable_kafka_error_is_transient_unless_fatal() -> None:
    assert classify(_commit_error(KafkaError.UNKNOWN, retriable=True)) is Fault.TRANSIENT
    assert classify(_commit_error(KafkaError.NOT_COORDINATOR, fatal=True)) is Fault.FATAL


@pytest.mark.parametrize("code", [
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID, KafkaError._ASSIGNMENT_LOST, KafkaError._MAX_POLL_EXCEEDED,
])
def test_a_group_that_moved_on_means_the_offsets_are_lost(code: int) -> None:
    assert classify(_commit_error(code)) is Fault.LOST


@pytest.mark.parametrize("code", [
    KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError._AUTHENTICATION,
    KafkaError.FENCED_INSTANCE_ID, KafkaError.UNKNOWN,
])
def test_other_kafka_errors_are_fatal(code: int) -> None:
    assert classify(_commit_error(code)) is Fault.FATAL


def test_an_error_with_nothing_underneath_is_fatal() -> None:
    assert classify(SinkError("table scores is missing")) is Fault.FATAL
    assert classify(ValueError("a bug")) is Fault.FATAL
    assert classify(KafkaException("not a KafkaError")) is Fault.FATAL


def test_only_the_cause_counts_not_an_error_being_handled_meanwhile() -> None:
    try:
        try:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        except psycopg.Error:
            raise SinkError("the schema does not match")  # noqa: B904 - context, no cause
    except SinkError as exc:
        assert classify(exc) is Fault.FATAL


def test_the_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(0.5, 10.0)
    assert [backoff.delay_s(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
