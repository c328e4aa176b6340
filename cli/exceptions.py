"""Errors of the command line and the demo."""

from __future__ import annotations

from speechstream.exceptions import SpeechstreamError

EXIT_ERROR = 1
"""A command failed: what ``CommandError`` and any other ``SpeechstreamError`` exit with."""
EXIT_USAGE = 2
"""An argument, a setting or a key file to fix (argparse exits with it too)."""
EXIT_INTERRUPTED = 130
"""Stopped by SIGINT or SIGTERM before it finished, as a shell reports an interrupt."""


class DemoTimeoutError(SpeechstreamError):
    """The demo's submissions did not all finish in time; the service logs say where it stuck."""


class ServiceNotReadyError(SpeechstreamError):
    """A service the demo started did not answer as ready (or at all); the message names it and
    its log file, which says why."""


class CommandError(SpeechstreamError):
    """A command could not do what it was asked; the message says why. ``speechstream`` prints
    it as ``error: …`` and exits with ``exit_status`` (1 unless the command documents another)."""

    def __init__(self, message: str, *, exit_status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class UsageError(CommandError):
    """An argument, a setting or a key file does not fit; the message names it (exit status 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_status=EXIT_USAGE)
