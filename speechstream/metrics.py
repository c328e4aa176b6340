"""Metrics as one bundle per service, declared field by field and built from a registry.

A service's bundle is a frozen dataclass of :class:`MetricsBundle` whose fields are declared
with :func:`metric`; ``Bundle.create(registry)`` registers every metric (tests pass a fresh
registry). Names carry their unit (``_seconds``, ``_total``); histograms name their buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field, fields
from typing import Any, Self

from prometheus_client import CollectorRegistry, Histogram


def metric(
    kind: type,
    name: str,
    documentation: str,
    *,
    labels: Sequence[str] = (),
    buckets: Sequence[float] | None = None,
) -> Any:
    """A bundle field: a ``Counter``, ``Gauge`` or ``Histogram`` (with explicit buckets)."""
    if (kind is Histogram) != (buckets is not None):
        raise ValueError(f"{name}: a histogram needs buckets, other metrics take none")
    return field(metadata={"metric": (kind, name, documentation, tuple(labels), buckets)})


class MetricsBundle:
    """Base of a service's metrics dataclass (see the module docstring)."""

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Self:
        """Register every declared metric in ``registry``."""
        values = {}
        for f in fields(cls):  # type: ignore[arg-type]  # subclasses are dataclasses
            kind, name, documentation, labels, buckets = f.metadata["metric"]
            extra = {} if buckets is None else {"buckets": buckets}
            values[f.name] = kind(name, documentation, labels, registry=registry, **extra)
        return cls(**values)
