"""Errors of the intake worker (streams)."""

from __future__ import annotations

from speechstream.exceptions import SpeechstreamError


class StateMoveError(SpeechstreamError):
    """The intake worker's state was not moved to the new app id; the message says why (stop
    the workers first, or pick an app id that is not in use)."""


class TableLayoutError(SpeechstreamError):
    """A Faust table would log to another changelog than the topic registry names; keep
    ``schemas/topics.py`` and the worker's tables in step."""
