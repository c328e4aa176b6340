"""`speechstream topics create | list`: the registry's topics on the broker."""

from __future__ import annotations

import argparse

from schemas.topics import ALL_TOPICS, changelog_specs
from speechstream.kafka.admin import create_topics, describe_topics
from speechstream.settings import KafkaSettings
from streams.settings import StreamsSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``topics`` command group."""
    topics = subparsers.add_parser(
        "topics", help="create or list the registry's topics",
        description="The topics of schemas/topics.py under $SPEECHSTREAM_TOPIC_PREFIX "
        "(default 'speechstream.') on $KAFKA_BOOTSTRAP_SERVERS.",
    )
    sub = topics.add_subparsers(dest="topics_command", required=True, metavar="{create,list}")
    create = sub.add_parser(
        "create", help="create every registry topic (idempotent)",
        description="Create every topic of the registry with its partitions and cleanup "
        "policy, and the changelogs of the intake worker's tables (app id "
        "$SPEECHSTREAM_STREAMS_APP_ID, default 'speechstream-intake'). Topics that exist "
        "are left as they are, except that the miners' entry topics and chain.blocks get "
        "message.timestamp.type=LogAppendTime (the broker's time, which the intake's block "
        "window reads) and the weights topic gets max.message.bytes=16842752 (a vector of "
        "4,096 uids).",
    )
    create.set_defaults(func=_create)
    listing = sub.add_parser("list", help="topics under the prefix with their partitions")
    listing.set_defaults(func=_list)


def _create(args: argparse.Namespace) -> int:
    settings = KafkaSettings()
    specs = ALL_TOPICS + changelog_specs(StreamsSettings().app_id)
    created = create_topics(settings, specs)
    infos = describe_topics(settings)
    for info in infos:
        state = "created" if info.name in created else "exists"
        print(f"{state:8} {info.name} ({info.partitions} partitions)")
    return 0


def _list(args: argparse.Namespace) -> int:
    settings = KafkaSettings()
    infos = describe_topics(settings)
    for info in infos:
        print(f"{info.name} {info.partitions}")
    return 0
