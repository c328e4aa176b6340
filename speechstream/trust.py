"""The keys a service trusts, followed on the ``trust`` topic, and the check of every record it
reads (``schemas.trust`` has the rules; this is their Kafka side).

A :class:`TrustStore` reads the ``trust`` topic whole at :meth:`~TrustStore.start` (only
``keys.trusted`` sets signed by the operator's root key count; the highest version holds), and
looks again every ``refresh_s`` seconds, or at once (at most once a second) when a record is
signed by a key it does not know yet. Its :meth:`~TrustStore.verify` is what consumers and
readers take as ``verify``: a record it refuses is dead-lettered with the reason and never
counts.

``speechstream`` services open theirs, with their own key, by :func:`service_trust`; commands
that only read, by :func:`checked_reads` (both close the store on exit).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from schemas.envelope import Envelope
from schemas.events import KeysTrusted
from schemas.topics import TopicRegistry
from schemas.trust import TrustSet, refusal, root_refusal
from speechstream.exceptions import TrustError
from speechstream.kafka.reader import LogReader
from speechstream.settings import KafkaSettings, ServiceSettings, TrustSettings
from speechstream.signer import Signer

TRUST_READER = "speechstream-trust"
"""The ``group.id`` every service's reader of the ``trust`` topic names (it joins no group;
librdkafka looks the group up all the same, so the broker's ACLs allow it to every reader)."""
MIN_REFRESH_S = 1.0
"""A record signed by a key this store does not know makes it look for a newer set at most
this often (a flood of forged signers costs one small read a second)."""
READ_LIMIT_S = 10.0
INSECURE_WARNING = ("SPEECHSTREAM_TRUST_INSECURE=true: no event's signer is checked; anyone "
                    "who can write to the log is believed (development only)")


class TrustStore:
    """The operator's trusted keys as last read, and the check of each record against them.

    ``root`` is the operator's public key; ``name`` names the service in logs. A
    :class:`LogReader` of the ``trust`` topic (group id :data:`TRUST_READER`), built from
    ``kafka``, follows the sets; a store built with :meth:`fixed` never reads (tests, one-off
    checks).
    """

    def __init__(
        self, kafka: KafkaSettings | None, root: str, *, name: str,
        refresh_s: float = 30.0, logger: logging.Logger | None = None,
        registry: TopicRegistry | None = None, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.current = TrustSet()
        self.refused_sets = 0
        self._registry = registry or (kafka.topics if kafka is not None else TopicRegistry())
        self._refresh_s = refresh_s
        self._clock = clock
        self._log = logger or logging.getLogger(__name__)
        self._lock = threading.RLock()
        self._last_read = float("-inf")
        self._reader: LogReader | None = None
        if kafka is not None:
            self._reader = LogReader(
                kafka, [self._registry.trust], self._take, name=TRUST_READER,
                expected=KeysTrusted, logger=self._log,
                verify=lambda env, raw, _topic: root_refusal(env, raw, root),
            )

    @classmethod
    def fixed(cls, root: str, trusted: TrustSet | KeysTrusted | None = None, *,
              registry: TopicRegistry | None = None) -> TrustStore:
        """A store that trusts ``trusted`` (and the root) and never reads the topic."""
        store = cls(None, root, name="fixed", registry=registry)
        if isinstance(trusted, KeysTrusted):
            trusted = TrustSet.of(trusted)
        store.current = trusted or TrustSet()
        return store

    def start(self, limit_s: float = READ_LIMIT_S) -> TrustStore:
        """Read the ``trust`` topic to its end (whether or not anything is there yet)."""
        if self._reader is not None:
            with self._lock:
                if not self._reader.start(limit_s):
                    self._log.warning("trust: could not read the trusted keys to their end "
                                      "within %.0fs; going on with version %d", limit_s,
                                      self.current.version)
                self._last_read = self._clock()
        return self

    def close(self) -> None:
        """Close the reader."""
        if self._reader is not None:
            self._reader.close()

    def _take(self, envelope: Envelope) -> None:
        event = envelope.payload
        assert isinstance(event, KeysTrusted)
        if event.version > self.current.version:
            self.current = TrustSet.of(event)
            self._log.info("trust: trusted keys version %d (%d keys)", event.version,
                           len(event.keys))

    def refresh(self, limit_s: float = 5.0) -> None:
        """Read what has arrived on the ``trust`` topic since the last look."""
        if self._reader is None:
            return
        with self._lock:
            self._last_read = self._clock()
            self._reader.catch_up(limit_s)

    def verify(self, envelope: Envelope, raw: bytes, topic: str) -> str | None:
        """Why the record ``raw`` read from ``topic`` must not count, or None
        (``schemas.trust.refusal``)."""
        now = self._clock()
        if self._reader is not None and now - self._last_read >= self._refresh_s:
            self.refresh()
        spec = self._registry.spec_of(topic)
        reason = refusal(envelope, raw, spec, self.current, self.root)
        signer = envelope.signer
        if (reason is not None and self._reader is not None and signer is not None
                and signer != self.root and signer not in self.current.keys
                and self._clock() - self._last_read >= MIN_REFRESH_S):
            self.refresh()
            reason = refusal(envelope, raw, spec, self.current, self.root)
        return reason

    def require(self, signer: Signer, role: str, name: str) -> None:
        """Raise :class:`TrustError` unless the trusted set names ``signer`` for ``role`` as
        ``name``: a service whose key is not trusted would write what every reader refuses."""
        entry = self.current.keys.get(signer.public_key)
        if entry is None or entry.role != role or entry.name != name:
            held = f" (it names it {entry.role} {entry.name!r})" if entry else ""
            raise TrustError(
                f"the operator's trusted keys (version {self.current.version}) do not name "
                f"key {signer.public_key} as {role} {name!r}{held}: run `speechstream trust "
                f"add --role {role} --name {name} --key {signer.public_key}` with the "
                "operator's key")


def trust_store(kafka: KafkaSettings, trust: TrustSettings, *, name: str,
                logger: logging.Logger | None = None) -> TrustStore | None:
    """The started store of ``trust``'s root key; None when the settings say to believe every
    event (logged as a warning). :class:`TrustError` when there is neither."""
    log = logger or logging.getLogger(__name__)
    if trust.operator_key is None:
        if trust.insecure:
            log.warning("%s: %s", name, INSECURE_WARNING)
            return None
        raise TrustError(
            "no root of trust: set SPEECHSTREAM_TRUST_OPERATOR_KEY to the operator's public key "
            "(`speechstream trust init` prints it; docs/security.md), or "
            "SPEECHSTREAM_TRUST_INSECURE=true to believe every event on the log (development "
            "only)")
    return TrustStore(kafka, trust.operator_key, name=name, refresh_s=trust.refresh_s,
                      logger=log).start()


def service_signer(settings: ServiceSettings, store: TrustStore | None, *, role: str,
                   name: str, variable: str) -> Signer | None:
    """The service's signer from ``settings.key_file``, checked against ``store`` (it must
    name the key for ``role`` as ``name``). Without a key file: None when ``store`` is None
    (nothing is checked), else :class:`TrustError` naming ``variable``, the setting to set."""
    if settings.key_file is None:
        if store is None:
            return None
        raise TrustError(f"{name} signs what it writes: set {variable} to its key file "
                         "(`speechstream trust keygen`)")
    signer = Signer.from_key_file(settings.key_file)
    if store is not None:
        store.require(signer, role, name)
    return signer


@dataclass(frozen=True)
class ServiceTrust:
    """What a service runs with: the store its reads are checked against (None on an
    unchecked development log) and the signer of what it writes (None likewise)."""

    store: TrustStore | None
    signer: Signer | None

    @property
    def verify(self) -> Callable[[Envelope, bytes, str], str | None] | None:
        """The check readers take as ``verify``; None when nothing is checked."""
        return None if self.store is None else self.store.verify


@contextmanager
def service_trust(kafka: KafkaSettings, settings: ServiceSettings, *, role: str, name: str,
                  trust: TrustSettings | None = None,
                  logger: logging.Logger | None = None) -> Iterator[ServiceTrust]:
    """The started store of the root key (:func:`trust_store`) and the service's signer from
    its key file, required to be trusted for ``role`` as ``name`` (:func:`service_signer`);
    the store is closed on exit. The key file's setting is named from ``settings``' prefix
    (``SPEECHSTREAM_SINK_KEY_FILE`` for the sink's) in the error when it is missing."""
    store = trust_store(kafka, trust or TrustSettings(), name=name, logger=logger)
    try:
        prefix = settings.model_config.get("env_prefix", "SPEECHSTREAM_")
        yield ServiceTrust(store, service_signer(settings, store, role=role, name=name,
                                                 variable=f"{prefix}KEY_FILE"))
    finally:
        if store is not None:
            store.close()


@contextmanager
def checked_reads(kafka: KafkaSettings, name: str,
                  logger: logging.Logger | None = None) -> Iterator[TrustStore | None]:
    """The started trust store a command that only reads checks the log with (None on an
    unchecked development log, ``SPEECHSTREAM_TRUST_INSECURE=true``), closed on exit."""
    store = trust_store(kafka, TrustSettings(), name=name, logger=logger)
    try:
        yield store
    finally:
        if store is not None:
            store.close()
