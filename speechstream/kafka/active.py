"""The active scoring version as a service knows it: the latest ``scoring.activated`` on
``scoring.active`` (``speechstream scoring activate``), or the service's own setting before
any (:attr:`speechstream.ledger.Ledger.active_version`, the one rule).

Each reader follows the whole (compacted, one-partition) topic itself
(:class:`~speechstream.kafka.reader.LogReader`): it is read to its end at start, then taken
up to what has arrived when the version is asked for, at most every ``REFRESH_EVERY_S`` (the
intake worker asks once per submission), so a switch reaches every service within a moment and
needs no restart.
"""

from __future__ import annotations

import logging
import time

from schemas.envelope import Envelope
from schemas.events import ScoringActivated
from speechstream.kafka.reader import LogReader
from speechstream.kafka.records import Verify
from speechstream.ledger import Ledger
from speechstream.settings import KafkaSettings

REFRESH_EVERY_S = 0.1


class ActiveScoringVersion:
    """The scoring version whose scores count; ``default`` until one is activated (only an
    activation ``verify`` lets count: the operator's)."""

    def __init__(self, kafka: KafkaSettings, default: str, *, name: str,
                 logger: logging.Logger | None = None, verify: Verify | None = None) -> None:
        self._log = logger or logging.getLogger(__name__)
        self._ledger = Ledger(default_version=default)
        self._reader = LogReader(kafka, [kafka.topics.scoring_active], self._apply, name=name,
                                 expected=ScoringActivated, logger=self._log, verify=verify)
        self._refreshed = float("-inf")

    @property
    def default(self) -> str:
        return self._ledger.default_version

    @property
    def activated(self) -> str | None:
        """The latest activated version read (None before any)."""
        return self._ledger.activated

    @property
    def version(self) -> str:
        """The active version as last read (no refresh)."""
        return self._ledger.active_version

    def start(self) -> str:
        """Read the topic from its start to its end; the active version."""
        self._reader.start()
        self._refreshed = time.monotonic()
        self._log.info("active scoring version: %s%s", self.version,
                       "" if self.activated else " (the setting: none activated yet)")
        return self.version

    def refresh(self) -> str:
        """Take what has arrived (without waiting; at most every ``REFRESH_EVERY_S``); the
        active version."""
        now = time.monotonic()
        if now - self._refreshed >= REFRESH_EVERY_S:
            self._refreshed = now
            self._reader.read_new()
        return self.version

    def _apply(self, env: Envelope) -> None:
        before = self.version
        self._ledger.apply(env)
        if self.version != before:
            self._log.info("scoring version %s activated (was %s)", self.version, before)

    def close(self) -> None:
        """Close the reader."""
        self._reader.close()
