"""The age of each record the intake's agents take: from the time the broker appended it to
the moment an agent takes it, the wait on the submission → intake hop (and on the intake's
other topics).

The floor's consumers observe it themselves (``speechstream.kafka.consumer``); Faust's consumer
is not one of them, so the agents observe it here, into the same histogram
(``speechstream_consumed_record_age_seconds{consumer="intake", topic}``, set by
``speechstream.kafka.lag.export_lag``). Only a time the broker stamped counts: a record whose
timestamp its producer chose (a miner could backdate it) is not observed.
"""

from __future__ import annotations

import time
from typing import Any

import faust
from prometheus_client import Histogram

from streams.chain import appended_ms


class RecordAges:
    """Observes the age of the records the agents take, once ``record_age`` is set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.record_age: Histogram | None = None
        self._children: dict[str, Any] = {}

    def observe(self, message: faust.types.Message, now: float | None = None) -> None:
        """Observe ``message``'s age, if the broker stamped it (``LogAppendTime``)."""
        if self.record_age is None:
            return
        stamped = appended_ms(message.timestamp, message.timestamp_type)
        if stamped is None:
            return
        topic = message.topic
        child = self._children.get(topic)
        if child is None:
            child = self._children[topic] = self.record_age.labels(self.name, topic)
        now = time.time() if now is None else now
        child.observe(max(0.0, now - stamped / 1000))
