"""The active scoring version as a service knows it: the latest ``scoring.activated`` on
``scoring.active`` (``speechstream rescore activate``), or the service's own setting before
any.

Each reader reads the whole (compacted, one-partition) topic itself, assigned, with no consumer
group: it is read to its end at start, then refreshed without waiting whenever the version is
asked for, so a switch reaches every service within one poll and needs no restart.
"""

from __future__ import annotations

import logging

from schemas.events import ScoringActivated
from speechstream.kafka.consumer import Batch, EventConsumer
from speechstream.settings import KafkaSettings

CATCH_UP_LIMIT_S = 10.0


class ActiveScoringVersion:
    """The scoring version whose scores count; ``default`` until one is activated."""

    def __init__(self, kafka: KafkaSettings, default: str, *, name: str,
                 logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(__name__)
        self._consumer = EventConsumer(
            kafka, name=name, topics=[kafka.topics.scoring_active],
            config={"group.id": name, "enable.auto.commit": False,
                    "isolation.level": "read_committed"},
            expected=ScoringActivated, logger=self._log,
        )
        self.default = default
        self.activated: str | None = None

    @property
    def version(self) -> str:
        """The active version as last read (no refresh)."""
        return self.activated or self.default

    def start(self) -> str:
        """Read the topic from its start to its end; the active version."""
        self._consumer.start(from_start=True)
        self._consumer.read_to_end(self._take, CATCH_UP_LIMIT_S)
        self._log.info("active scoring version: %s%s", self.version,
                       "" if self.activated else " (the setting: none activated yet)")
        return self.version

    def refresh(self) -> str:
        """Take what has arrived, without waiting; the active version."""
        self._take(self._consumer.poll(100, 0))
        return self.version

    def _take(self, batch: Batch) -> None:
        for env in batch.envelopes:
            version = env.payload.scoring_version
            if version != self.activated:
                self._log.info("scoring version %s activated (was %s)", version, self.version)
            self.activated = version

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()
