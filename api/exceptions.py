"""Errors of the REST API."""

from __future__ import annotations

from speechstream.exceptions import SpeechstreamError


class StoreUnavailableError(SpeechstreamError):
    """PostgreSQL did not answer the API; check DATABASE_URL and that the sink's migrations ran."""


class NoOperatorKeyError(SpeechstreamError):
    """The API has no operator key, so it cannot attest submissions; set
    SPEECHSTREAM_API_OPERATOR_KEY_FILE to the operator's key file."""
