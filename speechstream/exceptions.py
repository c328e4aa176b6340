"""The exception root of speechstream, and the errors of the floor (settings, Kafka plumbing).

Every error the project raises on purpose derives from :class:`SpeechstreamError`; each
package keeps its own errors in its ``exceptions.py``. The wire contracts (``schemas/``) sit
below this floor and raise plain ``ValueError`` for bytes or fields that break them; the
floor turns a record that does not decode into a :class:`DecodeError`, which keeps the bytes.
"""

from __future__ import annotations


class SpeechstreamError(Exception):
    """Base of every error speechstream raises on purpose; its message says what to do."""


class DecodeError(SpeechstreamError):
    """A record read from a topic is not the event expected there; it belongs in the
    dead-letter topic, which keeps its raw bytes and where they came from, so nothing is lost.
    """

    def __init__(
        self,
        reason: str,
        raw: bytes,
        *,
        topic: str,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw
        self.topic = topic
        self.partition = partition
        self.offset = offset


class TopicAdminError(SpeechstreamError):
    """The broker refused a topic operation or did not answer; the message has its reason
    (check KAFKA_BOOTSTRAP_SERVERS and the broker's permissions)."""


class AclError(SpeechstreamError):
    """A principals mapping that does not parse, or ACLs the broker refused or did not list
    (check KAFKA_BOOTSTRAP_SERVERS and that the credentials are a super user's)."""


class DeliveryError(SpeechstreamError):
    """The broker did not accept an event; check KAFKA_BOOTSTRAP_SERVERS and the broker's log."""


class ConsumeError(SpeechstreamError):
    """A consumer hit a fatal error; check the broker, the group id and the credentials."""


class TransactionError(SpeechstreamError):
    """A Kafka transaction could not be completed; the message names the call and the reason."""


class FencedError(TransactionError):
    """Another process took over this transactional id, or the producer failed fatally; stop
    this one (a restarted service with the same id fences its predecessor the same way)."""


class TransactionAbortedError(TransactionError):
    """A transaction was aborted and nothing of it is visible; process its input again."""


class ServiceError(SpeechstreamError):
    """A service could not start or stopped on its own; the message and its log say why."""


class KeyFileError(SpeechstreamError):
    """A key file is missing, unreadable, open to others or malformed; create one with
    `speechstream miner keygen` (or `operator keygen`) and keep it at mode 0600."""


class TrustError(SpeechstreamError):
    """A service cannot check or sign what it reads and writes: no operator root key
    (SPEECHSTREAM_TRUST_OPERATOR_KEY), no key file of its own, or a key the operator's trusted
    set does not name for its role; `speechstream trust` and docs/security.md say how."""
