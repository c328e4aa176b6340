"""The worker's Faust topics and tables, declared once from the topic registry."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from schemas.topics import INTAKE_TABLES, TABLE_PARTITIONS
from speechstream.kafka.records import Verify
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer
from streams.ages import RecordAges
from streams.app import table_options
from streams.exceptions import TableLayoutError
from streams.settings import StreamsSettings


@dataclass(frozen=True)
class Streams:
    """Every topic and table the agents use (raw bytes: ``schemas.codec`` is the codec), the
    check every record they read must pass (``verify``, none: believe every record) and the
    key every envelope they write is signed with (``signer``, none: unsigned); ``ages``
    observes each record's age when an agent takes it (none: not observed)."""

    registrations: faust.TopicT
    claimed: faust.TopicT
    released: faust.TopicT
    miners: faust.TopicT
    submissions: faust.TopicT
    accepted: faust.TopicT
    rejected: faust.TopicT
    failed: faust.TopicT
    requests: faust.TopicT
    cancellations: faust.TopicT
    deadletter: faust.TopicT
    uid_owner: faust.Table
    hotkey_uid: faust.Table
    hotkey_registered: faust.Table
    uid_handover: faust.Table
    hotkey_reassigned: faust.Table
    last_accepted: faust.Table
    repo_holder: faust.Table
    verify: Verify | None = None
    signer: Signer | None = None
    ages: RecordAges | None = None


def declare(
    app: faust.App, kafka: KafkaSettings, streams: StreamsSettings, *,
    verify: Verify | None = None, signer: Signer | None = None, ages: RecordAges | None = None,
) -> Streams:
    """Declare the topics and the changelog-backed tables (all must already exist); the agents
    read with ``verify``, sign with ``signer`` and observe each record's age in ``ages``."""
    t = kafka.topics

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    def table(name: str) -> faust.Table:
        # Keys are str and values JSON-serializable (the changelog is JSON both ways).
        tbl = app.Table(name, partitions=TABLE_PARTITIONS, key_type=str, help=INTAKE_TABLES[name],
                        options=table_options(streams))
        expected = t.changelog(streams.app_id, name)
        if tbl.changelog_topic_name != expected:
            raise TableLayoutError(
                f"table {name} would log to {tbl.changelog_topic_name}, the registry says "
                f"{expected}"
            )
        return tbl

    return Streams(
        registrations=topic(t.registrations),
        claimed=topic(t.claimed),
        released=topic(t.released),
        miners=topic(t.miners),
        submissions=topic(t.submissions),
        accepted=topic(t.accepted),
        rejected=topic(t.rejected),
        failed=topic(t.failed),
        requests=topic(t.evaluation_requests),
        cancellations=topic(t.cancellations),
        deadletter=topic(t.deadletter),
        uid_owner=table("uid_owner"),
        hotkey_uid=table("hotkey_uid"),
        hotkey_registered=table("hotkey_registered"),
        uid_handover=table("uid_handover"),
        hotkey_reassigned=table("hotkey_reassigned"),
        last_accepted=table("last_accepted"),
        repo_holder=table("repo_holder"),
        verify=verify,
        signer=signer,
        ages=ages,
    )
