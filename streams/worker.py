"""Builds the validation worker (app, topics, tables, agents) and runs it until SIGTERM."""

from __future__ import annotations

from pathlib import Path

import faust
from prometheus_client import CollectorRegistry, start_http_server

from schemas.topics import changelog_specs
from speechstream.settings import KafkaSettings, StreamsSettings
from speechstream.topics_admin import create_topics
from streams.agents import registrations, submissions
from streams.app import create_app
from streams.metrics import StreamsMetrics
from streams.topics import declare


def build_app(
    kafka: KafkaSettings, streams: StreamsSettings, metrics: StreamsMetrics
) -> faust.App:
    """The Faust app with every topic, table and agent of the validation worker."""
    app = create_app(kafka, streams)
    declared = declare(app, kafka, streams)
    registrations.register_agents(app, declared, metrics)
    submissions.register_agents(app, declared, metrics, streams.rate_limit_blocks)
    return app


def run_worker(
    kafka: KafkaSettings, streams: StreamsSettings, *, metrics_port: int | None = None
) -> None:
    """Run one worker in this process until it is signalled to stop."""
    registry = CollectorRegistry()
    metrics = StreamsMetrics.create(registry)
    if metrics_port:
        start_http_server(metrics_port, registry=registry)
    Path(streams.data_dir).mkdir(parents=True, exist_ok=True)
    # Faust would create its changelogs itself, lazily and without waiting for them: a table
    # written before the broker has their partitions fails with PartitionsMismatch.
    create_topics(kafka, changelog_specs(streams.app_id))
    app = build_app(kafka, streams, metrics)
    worker = faust.Worker(app, loglevel=streams.log_level, quiet=True)
    worker.execute_from_commandline()
