"""Errors of the PostgreSQL sink."""

from __future__ import annotations

from speechstream.exceptions import SpeechstreamError


class SinkError(SpeechstreamError):
    """The sink cannot write to PostgreSQL; check DATABASE_URL and the database's log."""


class MigrationError(SinkError):
    """A migration failed to apply; the database stays at the last applied version: fix the
    cause the message names and apply again."""
