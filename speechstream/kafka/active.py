"""The active scoring version as a service knows it: the latest ``scoring.activated`` on
``scoring.active`` (``speechstream scoring activate``), or the service's own setting before
any.

Each reader follows the whole (compacted, one-partition) topic itself
(:class:`~speechstream.kafka.follow.TopicFollower`): it is read to its end at start, then taken
up to what has arrived when the version is asked for, at most every ``REFRESH_EVERY_S`` (the
intake worker asks once per submission), so a switch reaches every service within a moment and
needs no restart.
"""

from __future__ import annotations

import logging
import time

from schemas.events import ScoringActivated
from speechstream.kafka.consumer import Batch
from speechstream.kafka.follow import TopicFollower
from speechstream.settings import KafkaSettings

REFRESH_EVERY_S = 0.1


class ActiveScoringVersion(TopicFollower):
    """The scoring version whose scores count; ``default`` until one is activated."""

    def __init__(self, kafka: KafkaSettings, default: str, *, name: str,
                 logger: logging.Logger | None = None) -> None:
        super().__init__(kafka, kafka.topics.scoring_active, ScoringActivated, name=name,
                         logger=logger)
        self.default = default
        self.activated: str | None = None
        self._refreshed = float("-inf")

    @property
    def version(self) -> str:
        """The active version as last read (no refresh)."""
        return self.activated or self.default

    def start(self) -> str:
        """Read the topic from its start to its end; the active version."""
        self._read_from_start()
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
            self._read_new()
        return self.version

    def _take(self, batch: Batch) -> None:
        for env in batch.envelopes:
            version = env.payload.scoring_version
            if version != self.activated:
                self._log.info("scoring version %s activated (was %s)", version, self.version)
            self.activated = version
