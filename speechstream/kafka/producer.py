"""A typed, idempotent confluent-kafka producer of speechstream envelopes."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas.codec import encode
from schemas.envelope import Envelope
from speechstream.exceptions import DeliveryError
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer

log = logging.getLogger(__name__)

RELIABLE: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "message.timeout.ms": 30_000,
}
"""The librdkafka settings of this project's producers of events: idempotent, every in-sync
replica acknowledges, 5 ms to fill a batch, a delivery given up after 30 s."""


class EventProducer:
    """Sends envelopes with idempotence on; ``flush`` raises if any delivery failed. With a
    ``signer`` every envelope it sends is signed with that key (``speechstream.signer``)."""

    def __init__(
        self, settings: KafkaSettings, *, client: Producer | None = None,
        signer: Signer | None = None, **overrides: Any
    ) -> None:
        self._settings = settings
        self._signer = signer
        self._overrides = overrides
        self._producer = client
        self._errors: list[str] = []
        self.delivered = 0

    def start(self) -> EventProducer:
        """Create the underlying client (no connection happens before this)."""
        if self._producer is None:
            cfg = self._settings.producer_config(**{**RELIABLE, **self._overrides})
            self._producer = Producer(cfg)
        return self

    def __enter__(self) -> EventProducer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err.str()}")
            log.error("delivery failed topic=%s error=%s", msg.topic(), err.str())
        else:
            self.delivered += 1

    def send(
        self, topic: str, envelope: Envelope, *, key: str | bytes | None = None
    ) -> None:
        """Queue one envelope (signed, with a signer), keyed by ``key`` or else by its
        envelope key."""
        value = encode(envelope) if self._signer is None else self._signer.encode(envelope)
        self.send_raw(topic, value, key=envelope.key if key is None else key)

    def send_raw(self, topic: str, value: bytes, *, key: str | bytes | None = None) -> None:
        """Queue raw bytes (for tests and tools that must send what no schema allows)."""
        assert self._producer is not None, "call start() first"
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise DeliveryError(f"cannot produce to {topic}: {exc}") from exc
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every queued event; raise :class:`DeliveryError` with the broker's reason."""
        assert self._producer is not None, "call start() first"
        remaining = self._producer.flush(timeout_s)
        if remaining:
            self._errors.append(f"{remaining} event(s) not delivered within {timeout_s}s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryError("; ".join(errors))

    def close(self) -> None:
        """Flush what is queued (errors are logged) and drop the client."""
        if self._producer is not None:
            try:
                self.flush()
            except DeliveryError as exc:
                log.error("close: %s", exc)
            self._producer = None
