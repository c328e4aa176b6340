"""The intake worker's settings (``SPEECHSTREAM_STREAMS_*``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from schemas.fields import DEFAULT_SCORING_VERSION, MAX_UIDS, SUBNET_SIZE
from speechstream.chainhead import JUMP_SLACK_BLOCKS
from speechstream.settings import ServiceSettings
from streams.rules import BLOCK_WINDOW, RATE_LIMIT_BLOCKS


class StreamsSettings(ServiceSettings):
    """The intake worker (Faust): validates registrations and submissions and routes them.

    ``app_id`` names its consumer group and its tables' changelog topics (both under the
    topic prefix).
    """

    model_config = SettingsConfigDict(env_prefix="SPEECHSTREAM_STREAMS_", extra="ignore")

    app_id: str = "speechstream-intake"
    rate_limit_blocks: int = Field(
        RATE_LIMIT_BLOCKS, ge=1, description="A hotkey's submissions lie at least this many "
        "blocks apart (SPEC §3).",
    )
    block_window: int = Field(
        BLOCK_WINDOW, ge=0, description="A registration's or submission's claimed block lies "
        "at most this many blocks behind the chain's head as it stood when the record reached "
        "the broker (BLOCK_TOO_OLD otherwise); no bound before a head is published.",
    )
    chain_jump_blocks: int = Field(
        JUMP_SLACK_BLOCKS, ge=0, description="A head on chain.blocks may pass the previous "
        "accepted head by this many blocks plus two per 12 s between their records; one that "
        "jumps further is ignored.",
    )
    subnet_size: int = Field(
        SUBNET_SIZE, ge=1, le=MAX_UIDS, description="The subnet's uids: 0 ≤ uid < subnet_size "
        "(a registration or handover of another uid is refused, UID_OUT_OF_RANGE).",
    )
    recovery_stall_s: float = Field(
        60.0, ge=5.0, description="A table recovery that receives no changelog record for "
        "this long is a stall: /health answers 503 with the waiting changelog partitions "
        "(streams.recovery_watch).",
    )
    data_dir: str = ".speechstream/streams"
    table_store: Literal["rocksdb", "memory"] = Field(
        "rocksdb", description="Where the tables live between changelog records: RocksDB on "
        "disk (under data_dir, memory bounded whatever the tables' size) or memory (every "
        "repo and hotkey ever routed in the worker's memory). Either is rebuilt from the "
        "changelogs when the worker starts.",
    )
    web_port: int = 6066
    web_enabled: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    operator_key: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None, description="The operator's public key (hex): submissions it attests through "
        "the REST API are accepted; none is accepted without it.",
    )
    scoring_version: str = Field(
        DEFAULT_SCORING_VERSION, description="The scoring version accepted submissions are "
        "requested for until one is activated on scoring.active (`speechstream scoring "
        "activate`), which wins over this.",
    )
    session_timeout_ms: int = Field(
        10_000, ge=6_000, description="How long the group waits for a worker that stopped "
        "heartbeating (a kill -9) before its partitions go to the others, or to its restart.",
    )
    fetch_max_wait_ms: int = Field(
        100, ge=1, le=1500, description="How long the broker may hold the worker's fetch "
        "request when it has no new records (Faust hard-codes 1500: a trivial two-agent Faust "
        "app moved 1,825 records/s with it and 4,120 with 100, see docs/latency.md).",
    )
