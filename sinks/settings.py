"""The PostgreSQL sink's settings (``SPEECHSTREAM_SINK_*``)."""

from __future__ import annotations

import socket

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from speechstream.settings import ServiceSettings


class SinkSettings(ServiceSettings):
    """The PostgreSQL sink.

    ``instance_id`` makes its consumer a static member of its group: a restarted sink with the
    same id takes its partitions back at once, without waiting for its predecessor's session
    to expire. Each sink running in one group needs an id of its own.
    """

    model_config = SettingsConfigDict(env_prefix="SPEECHSTREAM_SINK_", extra="ignore")

    group_id: str = "speechstream-sink"
    instance_id: str = Field(
        default_factory=lambda: f"sink-{socket.gethostname()}", min_length=1, max_length=200,
        description="The consumer's group.instance.id (static membership); unique per sink "
        "of a group, stable across its restarts.",
    )
    session_timeout_ms: int = Field(
        45_000, ge=6_000, description="How long a stopped sink's partitions wait for it (a "
        "static member) before they go to the other sinks of its group.",
    )
    max_poll_interval_ms: int = Field(
        300_000, ge=1_000, description="The consumer's max.poll.interval.ms. A write that waits "
        "(the database away, a rebuild's swap) does not count against it: the sink holds its "
        "partitions meanwhile, polling every quarter of it (at most every 5 s).",
    )
    batch_size: int = Field(
        20_000, ge=1, description="The most records one batch (one database transaction) "
        "takes; a backlog drains faster in larger ones, a trickle is written as it comes.",
    )
    batch_timeout_s: float = 0.2
    audio_keep_per_uid: int | None = Field(
        4, ge=1, description="The clips of each uid's newest submissions kept (and of the one "
        "its minerboard entry shows); older ones are purged, their rows kept so the pages can "
        "say so. Unset (empty) keeps every clip the log still holds.",
    )
    retry_backoff_s: float = Field(
        0.5, gt=0, description="First wait before a write or commit that failed transiently "
        "(database or broker away) is tried again; doubled after each failure.",
    )
    retry_backoff_max_s: float = Field(10.0, gt=0, description="The longest such wait.")
