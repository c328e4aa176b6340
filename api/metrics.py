"""Prometheus metrics of the REST API, one bundle built from a registry argument."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from speechstream.metrics import MetricsBundle, metric


@dataclass(frozen=True)
class ApiMetrics(MetricsBundle):
    """Requests by route and status code, and their durations."""

    requests: Counter = metric(Counter, "speechstream_api_requests_total",
                               "Requests answered, by route and status code",
                               labels=("route", "code"))
    seconds: Histogram = metric(
        Histogram, "speechstream_api_request_seconds", "Time to answer a request, by route",
        labels=("route",), buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
    )
