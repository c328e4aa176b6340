"""Errors of the PostgreSQL sink."""

from __future__ import annotations

from speechstream.exceptions import SpeechstreamError


class SinkError(SpeechstreamError):
    """The sink cannot write to PostgreSQL; check DATABASE_URL and the database's log."""


class MigrationError(SinkError):
    """A migration failed to apply; the database stays at the last applied version: fix the
    cause the message names and apply again."""


class RebuildError(SinkError):
    """A rebuild did not finish; the live tables are as they were and the half-built schema
    is dropped: fix the cause the message names and run the rebuild again."""


class RebuildInterrupted(RebuildError):
    """The rebuild was stopped (Ctrl-C, SIGTERM) before it swapped; nothing live changed."""
