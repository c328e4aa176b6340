"""Errors of the producers (the miner's keys and commands)."""

from __future__ import annotations

from speechstream.exceptions import SpeechstreamError


class KeyFileError(SpeechstreamError):
    """A hotkey key file is missing, unreadable or malformed; run `speechstream miner keygen`."""
