"""The exception root of speechstream and the errors of the wire format."""

from __future__ import annotations


class SpeechstreamError(Exception):
    """Base of every error speechstream raises on purpose."""


class SchemaError(SpeechstreamError):
    """An event does not match its schema; fix the producer or send it to the dead-letter topic."""


class DecodeError(SchemaError):
    """Bytes read from a topic are not a valid event; the record belongs in the dead-letter topic.

    It keeps the raw bytes and where they came from so that nothing is lost.
    """

    def __init__(
        self,
        reason: str,
        raw: bytes,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw
        self.topic = topic
        self.partition = partition
        self.offset = offset


class SignatureError(SpeechstreamError):
    """A signed event's signature does not verify against its hotkey."""


class KeyFileError(SpeechstreamError):
    """A hotkey key file is missing, unreadable or malformed; run `speechstream miner keygen`."""
