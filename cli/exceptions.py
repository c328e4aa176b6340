"""Errors of the command line and the demo."""

from __future__ import annotations

from speechstream.exceptions import SpeechstreamError


class DemoTimeoutError(SpeechstreamError):
    """The demo's submissions did not all finish in time; the service logs say where it stuck."""
