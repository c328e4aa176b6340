"""Errors of the local development stack (``speechstream dev``)."""

from __future__ import annotations

from speechstream.exceptions import SpeechstreamError


class DevStackError(SpeechstreamError):
    """The local development stack could not do what was asked; the message says which part."""


class MissingToolError(DevStackError):
    """A program the dev stack needs is missing; the message names the command that installs it."""


class CommandFailedError(DevStackError):
    """A helper command (mvn, initdb, pg_ctl, ...) failed; the message holds its output."""


class PortInUseError(DevStackError):
    """A port the dev stack wants is taken; choose another with ``SPEECHSTREAM_DEV_*_PORT``."""


class StartupError(DevStackError):
    """A service exited or did not become ready in time; the message names its log file."""


class StatePathError(DevStackError):
    """The state directory cannot be used (e.g. the postgres user cannot reach it); pick another."""


class ServiceDiedError(DevStackError):
    """A service run as a child process exited on its own; its log file says why."""
