"""Create, describe and delete the registry's topics with confluent-kafka's AdminClient."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from schemas.topics import ALL_TOPICS, TopicSpec
from speechstream.exceptions import TopicAdminError
from speechstream.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicInfo:
    """One topic as the broker sees it, next to what the registry expects of it."""

    name: str
    partitions: int
    spec: TopicSpec | None = None

    @property
    def matches_registry(self) -> bool:
        """Whether the partition count is the registry's (True for unregistered topics)."""
        return self.spec is None or self.spec.partitions == self.partitions


def admin_client(settings: KafkaSettings) -> AdminClient:
    """An AdminClient for ``settings`` (connects lazily, on its first request)."""
    return AdminClient(settings.to_librdkafka())


def group_members_with_partitions(settings: KafkaSettings, group: str,
                                  timeout_s: float = 10.0) -> int:
    """How many members of a stable consumer ``group`` own partitions (0 while it rebalances,
    or when the broker does not answer within ``timeout_s``)."""
    try:
        info = describe_group(settings, group, timeout_s)
    except TopicAdminError:
        return 0
    return info.members_with_partitions if info.state == ConsumerGroupState.STABLE.name else 0


@dataclass(frozen=True)
class GroupInfo:
    """A consumer group as the broker describes it."""

    group: str
    state: str
    """``STABLE``, ``EMPTY``, ``PREPARING_REBALANCE``, ``COMPLETING_REBALANCE``, ``DEAD`` (a
    group the broker does not know) or ``UNKNOWN``."""
    members: int
    members_with_partitions: int


def describe_group(settings: KafkaSettings, group: str, timeout_s: float = 10.0) -> GroupInfo:
    """The state and members of consumer ``group``; raises ``TopicAdminError`` when the broker
    does not answer (unlike :func:`group_members_with_partitions`, which answers 0)."""
    admin = admin_client(settings)
    try:
        described = admin.describe_consumer_groups([group])[group].result(timeout=timeout_s)
    except KafkaException as exc:
        err = exc.args[0]
        if isinstance(err, KafkaError) and err.code() == KafkaError.GROUP_ID_NOT_FOUND:
            return GroupInfo(group, ConsumerGroupState.DEAD.name, 0, 0)
        raise TopicAdminError(f"describing consumer group {group} failed: {err}") from exc
    except TimeoutError as exc:
        raise TopicAdminError(f"describing consumer group {group}: no answer in "
                              f"{timeout_s:.0f}s") from exc
    members = list(described.members or [])
    return GroupInfo(
        group, described.state.name, len(members),
        sum(1 for m in members if m.assignment is not None and m.assignment.topic_partitions),
    )


def group_lag(settings: KafkaSettings, group: str, topics: Iterable[str],
              timeout_s: float = 10.0) -> dict[str, int]:
    """Per topic, the committed records ``group`` has not consumed: each partition's last
    stable offset (read_committed) less the group's committed offset, or less the partition's
    first offset where the group has committed none (it starts from the earliest). A topic the
    broker does not have is left out."""
    topics = list(topics)
    admin = admin_client(settings)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
        request = [ConsumerGroupTopicPartitions(group)]
        found = admin.list_consumer_group_offsets(request)[group].result(timeout=timeout_s)
        partitions = [TopicPartition(t, p) for t in topics if t in metadata.topics
                      for p in metadata.topics[t].partitions]
        ends = _offsets(admin, partitions, OffsetSpec.latest(), timeout_s)
        starts = _offsets(admin, partitions, OffsetSpec.earliest(), timeout_s)
    except KafkaException as exc:
        raise TopicAdminError(f"reading the offsets of group {group} failed: "
                              f"{exc.args[0]}") from exc
    except TimeoutError as exc:
        raise TopicAdminError(f"reading the offsets of group {group}: no answer in "
                              f"{timeout_s:.0f}s") from exc
    committed = {(tp.topic, tp.partition): tp.offset for tp in found.topic_partitions or []
                 if tp.offset >= 0}
    lag = {t: 0 for t in topics if t in metadata.topics}
    for key, end in ends.items():
        lag[key[0]] += max(0, end - committed.get(key, starts[key]))
    return lag


def _offsets(admin: AdminClient, partitions: list[TopicPartition], spec: OffsetSpec,
             timeout_s: float) -> dict[tuple[str, int], int]:
    if not partitions:
        return {}
    futures = admin.list_offsets({tp: spec for tp in partitions},
                                 isolation_level=IsolationLevel.READ_COMMITTED,
                                 request_timeout=timeout_s)
    return {(tp.topic, tp.partition): f.result(timeout=timeout_s).offset
            for tp, f in futures.items()}


def create_topics(
    settings: KafkaSettings,
    specs: Iterable[TopicSpec] = ALL_TOPICS,
    *,
    replication_factor: int = -1,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the registry's topics under ``settings.topic_prefix``; idempotent.

    Partitions and configs come from each ``TopicSpec``; a replication factor of -1 uses the
    broker's default. A topic that existed already gets the settings its spec cannot do
    without (:func:`_set_on_existing`: a topic created before the registry asked for them):
    the broker's append time where the spec stamps records with it, and the spec's
    ``max.message.bytes`` (the weights topic's 16 MiB); nothing else of an existing topic
    changes. Returns the names created by this call (empty when all existed), after every
    topic is visible in the broker's metadata with its partitions.
    """
    wanted = {settings.topics.name(spec): spec for spec in specs}
    admin = admin_client(settings)
    new = [
        NewTopic(name, num_partitions=spec.partitions, replication_factor=replication_factor,
                 config=spec.config())
        for name, spec in wanted.items()
    ]
    created: list[str] = []
    futures = admin.create_topics(new, request_timeout=timeout_s, operation_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise TopicAdminError(f"creating topic {name} failed: {err}") from exc
        except TimeoutError as exc:
            raise TopicAdminError(f"creating topic {name}: no answer in {timeout_s:.0f}s") from exc
    _wait_visible(admin, {n: s.partitions for n, s in wanted.items()}, timeout_s)
    _set_on_existing(admin, {n: required for n, spec in wanted.items()
                             if n not in created and (required := required_settings(spec))},
                     timeout_s)
    for info in describe_topics(settings, names=list(wanted)):
        if not info.matches_registry:
            log.warning(
                "topic %s has %d partitions, the registry says %d",
                info.name, info.partitions, info.spec.partitions if info.spec else 0,
            )
    return sorted(created)


TIMESTAMP_TYPE = "message.timestamp.type"
MAX_MESSAGE_BYTES = "max.message.bytes"


def required_settings(spec: TopicSpec) -> dict[str, str]:
    """What an existing topic of ``spec`` is given too (:func:`create_topics`): the broker's
    append time where the spec asks for it, and the spec's largest record."""
    config = spec.config()
    return {name: config[name] for name in (TIMESTAMP_TYPE, MAX_MESSAGE_BYTES) if name in config}


def _set_on_existing(admin: AdminClient, settings: dict[str, dict[str, str]],
                     timeout_s: float) -> None:
    """Set each topic's ``settings`` (topic → name → value) on the existing topics
    (idempotent). The records appended before ``message.timestamp.type=LogAppendTime`` keep
    their producer's time (the intake judges those by the head it knows now,
    docs/architecture.md)."""
    if not settings:
        return
    resources = [
        ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            for key, value in wanted.items()])
        for name, wanted in settings.items()
    ]
    futures = admin.incremental_alter_configs(resources, request_timeout=timeout_s)
    for resource, future in futures.items():
        what = ", ".join(settings[resource.name])
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            raise TopicAdminError(f"setting {what} on topic {resource.name} failed: "
                                  f"{exc.args[0]}") from exc
        except TimeoutError as exc:
            raise TopicAdminError(f"setting {what} on topic {resource.name}: no "
                                  f"answer in {timeout_s:.0f}s") from exc


def _wait_visible(admin: AdminClient, partitions: dict[str, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            metadata = admin.list_topics(timeout=min(5.0, timeout_s))
        except KafkaException as exc:
            raise TopicAdminError(f"the broker did not answer a metadata request: {exc}") from exc
        missing = {
            name: count
            for name, count in partitions.items()
            if name not in metadata.topics
            or metadata.topics[name].error is not None
            or any(p.leader < 0 for p in metadata.topics[name].partitions.values())
        }
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TopicAdminError(f"topics not visible after {timeout_s:.0f}s: {sorted(missing)}")
        time.sleep(0.1)


def describe_topics(
    settings: KafkaSettings,
    *,
    names: Iterable[str] | None = None,
    prefix: str | None = None,
    timeout_s: float = 10.0,
) -> list[TopicInfo]:
    """Topics on the broker: ``names`` if given, else those under ``prefix``.

    ``prefix`` defaults to ``settings.topic_prefix``; pass ``""`` for every topic except the
    broker's internal ones (``__consumer_offsets``, ...).
    """
    try:
        metadata = admin_client(settings).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise TopicAdminError(f"the broker did not answer a metadata request: {exc}") from exc
    by_name = {name: spec for name, spec in settings.topics.all()}
    if names is not None:
        selected = [n for n in names if n in metadata.topics]
    else:
        start = settings.topic_prefix if prefix is None else prefix
        selected = [
            n for n in metadata.topics if n.startswith(start) and not n.startswith("__")
        ]
    return [
        TopicInfo(name, len(metadata.topics[name].partitions), by_name.get(name))
        for name in sorted(selected)
    ]


def delete_topics(
    settings: KafkaSettings, names: Iterable[str], *, timeout_s: float = 30.0
) -> None:
    """Delete topics; topics that do not exist are ignored."""
    names = list(names)
    if not names:
        return
    admin = admin_client(settings)  # keep a reference until the futures resolve
    futures = admin.delete_topics(names, operation_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            raise TopicAdminError(f"deleting topic {name} failed: {err}") from exc
        except TimeoutError as exc:
            raise TopicAdminError(f"deleting topic {name}: no answer in {timeout_s:.0f}s") from exc
