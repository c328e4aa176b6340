"""The sink's writer contract (``SinkWriter``): start once, write batches of envelopes, close.

The running sink, which consumes the topics and hands batches to a writer, is
``sinks.runner.SinkService``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from schemas.envelope import Envelope


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch as :meth:`SinkWriter.prepare` leaves it for :meth:`SinkWriter.write_prepared`: the
    envelopes, and what the sink derived from them without a connection (``None``: nothing)."""

    envelopes: Sequence[Envelope]
    derived: Any = None


class SinkWriter(ABC):
    """Materializes envelopes somewhere durable; ``write_batch`` is atomic and idempotent."""

    @abstractmethod
    def start(self) -> None:
        """Connect and prepare; called once before the first batch."""

    @abstractmethod
    def write_batch(self, envelopes: Sequence[Envelope],
                    offsets: Sequence[int] | None = None) -> dict[str, int]:
        """Write every envelope in one transaction; return rows written per table.
        ``offsets``: each record's offset in its partition (what is ordered by log position
        needs it)."""

    def prepare(self, envelopes: Sequence[Envelope],
                offsets: Sequence[int] | None = None) -> Prepared:
        """The part of writing the batch that needs no connection (the running sink calls it
        on its consuming thread while the previous batch is written); pure, so a batch that is
        written again is not prepared again."""
        return Prepared(envelopes)

    def write_prepared(self, prepared: Prepared) -> dict[str, int]:
        """:meth:`write_batch` of a prepared batch."""
        return self.write_batch(prepared.envelopes)

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
