"""Reading a labelled counter in tests."""

from __future__ import annotations

from prometheus_client import Counter


def counted(counter: Counter) -> dict[tuple[str, ...], float]:
    """Each label set of ``counter`` that counted something, with its count (the ``_total``
    samples)."""
    return {tuple(sample.labels.values()): sample.value
            for family in counter.collect() for sample in family.samples
            if sample.name.endswith("_total") and sample.value}
