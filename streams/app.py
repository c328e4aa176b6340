"""Creates the Faust app of the intake worker; topics and agents live elsewhere."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import faust

from speechstream.kafka.producer import RELIABLE
from speechstream.settings import KafkaSettings
from streams.settings import StreamsSettings
from streams.transport import SCHEME


def credentials(kafka: KafkaSettings) -> faust.types.auth.CredentialsT | None:
    """Faust's credentials for the same SASL / TLS settings every other client uses."""
    context = kafka.ssl_context()
    if kafka.sasl_mechanism:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return faust.SASLCredentials(username=kafka.sasl_username or "", password=password,
                                     mechanism=kafka.sasl_mechanism, ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


STATE_PREFIX = "worker-"
"""A worker's table files are in ``<data_dir>/<app id>/worker-<pid>-<random>``."""
TABLE_STORE_OPTIONS: dict[str, Any] = {
    "driver": "rocksdict",
    "write_buffer_size": 512 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 512 * 1024,
    "bloom_filter_size": 10,
    "max_open_files": 64,
}
"""RocksDB's settings for each table partition (7 tables of 4 partitions): at most 1 MiB of
write buffers and 0.5 MiB of block cache each, where Faust's defaults are 192 MiB and 2 GiB."""


def state_dir(kafka: KafkaSettings, streams: StreamsSettings) -> Path:
    """The directory of this process's tables: its own, so that two workers on one host never
    share one, and rebuilt from the changelogs at each start (as the memory store is);
    :class:`~streams.worker.IntakeWorker` removes it when it stops, and the directories of
    workers that are gone when it starts."""
    parent = Path(streams.data_dir) / f"{kafka.topic_prefix}{streams.app_id}"
    return parent / f"{STATE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"


def table_options(streams: StreamsSettings) -> dict[str, Any]:
    """The options of a table's store (a new dict each time: Faust's store consumes it)."""
    return dict(TABLE_STORE_OPTIONS) if streams.table_store == "rocksdb" else {}


def create_app(kafka: KafkaSettings, streams: StreamsSettings) -> faust.App:
    """The Faust app: tables in RocksDB (or memory: ``table_store``) backed by changelog
    topics, at-least-once processing.

    The app id carries the topic prefix, so deployments (and tests) sharing a broker keep
    separate consumer groups and changelogs.
    """
    app_id = f"{kafka.topic_prefix}{streams.app_id}"
    app = faust.App(
        app_id,
        # Faust's aiokafka transport reading committed records only (streams.transport).
        broker=kafka.faust_broker_url().replace("kafka://", f"{SCHEME}://"),
        broker_credentials=credentials(kafka),
        store=f"{streams.table_store}://",
        datadir=str(state_dir(kafka, streams)),
        topic_partitions=4,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=streams.web_enabled,
        web_port=streams.web_port,
        web_bind="127.0.0.1",
        autodiscover=False,
        table_standby_replicas=0,
        stream_buffer_maxsize=8192,
        broker_commit_every=2000,
        broker_commit_interval=1.0,
        producer_linger=0.005,
        broker_session_timeout=streams.session_timeout_ms / 1000,
        broker_heartbeat_interval=min(3.0, streams.session_timeout_ms / 3000),
    )
    # Faust has no setting for it; the transport (streams.transport) reads it from the app.
    app.fetch_max_wait_ms = streams.fetch_max_wait_ms  # type: ignore[attr-defined]
    # The transport's producer sends through confluent-kafka with this configuration.
    # A delivery is never given up (message.timeout.ms 0): the worker's sends, its tables'
    # changelog records among them, wait out a broker outage of any length, and its offset
    # commits wait for them (LibrdkafkaProducer.flush). Given up after 2 minutes, a changelog
    # record failed and took the worker down with it.
    app.librdkafka_producer_config = kafka.producer_config(  # type: ignore[attr-defined]
        **{**RELIABLE, "client.id": app_id, "message.timeout.ms": 0})
    return app
