"""The sink contract: setup once, write batches of envelopes, close."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from schemas.envelope import Envelope


class Sink(ABC):
    """Materializes envelopes somewhere durable; ``write_batch`` is atomic and idempotent."""

    @abstractmethod
    def setup(self) -> None:
        """Connect and prepare; called once before the first batch."""

    @abstractmethod
    def write_batch(self, envelopes: Sequence[Envelope]) -> dict[str, int]:
        """Write every envelope in one transaction; return rows written per table."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
