"""The broker's ACLs, derived from the topic registry's writers and readers.

``derive_acls`` is pure: for each principal of a role it allows

- WRITE and DESCRIBE on every topic the registry says the role writes, READ and DESCRIBE on
  every topic it reads (literal names under the deployment's topic prefix);
- IDEMPOTENT_WRITE on the cluster to every role that writes (every producer of ours is
  idempotent; brokers since Kafka 3.0 need only WRITE on the topic, older ones this too);
- READ and DESCRIBE on the role's consumer groups: the groups it joins, and the ``group.id``
  its whole-topic readers (``speechstream.kafka.reader.LogReader``) name without joining,
  since librdkafka asks for its group even with a manual assignment;
- WRITE and DESCRIBE on the transactional ids of an evaluator: those under
  ``<evaluator group>.<evaluator id>-`` (its transactional id is ``<group>.<id>-<device>``),
  so one evaluator cannot fence another; an evaluator principal given no id gets the prefix
  ``<evaluator group>.`` (every evaluator's);
- CREATE, READ, WRITE, DESCRIBE and DESCRIBE_CONFIGS on the intake worker's internal topics
  (``<prefix><app id>-``: its tables' changelogs, Faust's repartition and assignor topics).

``apply_acls`` creates them with the AdminClient; the broker keeps one copy of each, so
applying the same plan twice changes nothing, and it returns once the broker lists (and so
enforces) what it created.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from schemas.topics import ALL_TOPICS, ROLES, Role, TopicRegistry
from speechstream.exceptions import AclError
from speechstream.settings import KafkaSettings

CLUSTER = "kafka-cluster"
ResourceKind = Literal["topic", "group", "transactional_id", "cluster"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal[
    "READ", "WRITE", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "IDEMPOTENT_WRITE",
]


@dataclass(frozen=True, order=True)
class Principal:
    """One principal of a role (``User:evaluator-1``); ``instance`` is the evaluator's or
    validator's id, where the role has one per process."""

    role: Role
    name: str
    instance: str | None = None


@dataclass(frozen=True)
class GroupPattern:
    """A consumer group ``name`` (or every group whose id starts with it)."""

    name: str
    pattern: Pattern = "literal"


@dataclass(frozen=True)
class AclContext:
    """What the derivation needs beyond the registry: the deployment's topic prefix, the
    intake worker's app id, the evaluators' group (their transactional ids start with it) and
    each role's consumer groups."""

    topic_prefix: str = "speechstream."
    intake_app_id: str = "speechstream-intake"
    evaluator_group: str = "speechstream-evaluators"
    groups: Mapping[str, tuple[GroupPattern, ...]] = field(default_factory=dict)


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule: ``principal`` may do ``operation`` on the resource."""

    principal: str
    resource: ResourceKind
    pattern: Pattern
    name: str
    operation: Operation
    role: str = ""

    def binding(self) -> AclBinding:
        """The confluent-kafka binding that creates it (any host)."""
        return AclBinding(
            _RESOURCE_TYPES[self.resource], self.name, _PATTERNS[self.pattern],
            self.principal, "*", AclOperation[self.operation], AclPermissionType.ALLOW,
        )

    def key(self) -> tuple[str, str, str, str, str]:
        """What the broker knows of it (the role is ours)."""
        return (self.principal, self.resource, self.pattern, self.name, self.operation)


_RESOURCE_TYPES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID,
    "cluster": ResourceType.BROKER,
}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}


def default_principals() -> list[Principal]:
    """One principal a role, named after it (``User:miner``, ``User:intake`` …)."""
    return [Principal(role, f"User:{role}") for role in ROLES]


def parse_principals(data: Mapping[str, Any]) -> list[Principal]:
    """Principals from a mapping role → list of ``"User:name"`` or
    ``{"principal": "User:name", "id": "<evaluator or validator id>"}``."""
    principals: list[Principal] = []
    for role, entries in data.items():
        if role not in ROLES:
            raise AclError(f"unknown role {role!r}; the roles are {', '.join(ROLES)}")
        if isinstance(entries, (str, Mapping)):
            entries = [entries]
        if not isinstance(entries, list):
            raise AclError(f"{role}: a list of principals expected")
        for entry in entries:
            if isinstance(entry, str):
                name, instance = entry, None
            elif isinstance(entry, Mapping) and isinstance(entry.get("principal"), str):
                name, instance = entry["principal"], entry.get("id")
                if instance is not None and (not isinstance(instance, str) or not instance):
                    raise AclError(f"{role}: {name}: id must be a non-empty string")
            else:
                raise AclError(f"{role}: {entry!r} is neither 'User:name' nor "
                               "{{'principal': 'User:name', 'id': ...}}")
            if ":" not in name or not name.split(":", 1)[1]:
                raise AclError(f"{role}: {name!r} is not a principal such as 'User:name'")
            principals.append(Principal(role, name, instance))  # type: ignore[arg-type]
    _check_instances(principals)
    return principals


def _check_instances(principals: Sequence[Principal]) -> None:
    for role in ("evaluator", "validator"):
        ids = [p.instance for p in principals if p.role == role and p.instance is not None]
        if len(ids) != len(set(ids)):
            raise AclError(f"two {role} principals share an id: each {role} id has its own "
                           "principal")


def load_principals(path: Path) -> list[Principal]:
    """The principal mapping in the JSON file ``path``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AclError(f"cannot read the principals file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise AclError(f"{path}: a JSON object role → principals expected")
    return parse_principals(data)


def derive_acls(principals: Iterable[Principal], context: AclContext) -> list[Acl]:
    """Every ACL the principals need, sorted, without duplicates."""
    topics = TopicRegistry(context.topic_prefix)
    acls: set[Acl] = set()

    def allow(p: Principal, resource: ResourceKind, name: str, *ops: Operation,
              pattern: Pattern = "literal") -> None:
        for op in ops:
            acls.add(Acl(p.name, resource, pattern, name, op, p.role))

    for p in principals:
        writes = False
        for spec in ALL_TOPICS:
            if p.role in spec.writers:
                allow(p, "topic", topics.name(spec), "WRITE", "DESCRIBE")
                writes = True
            if p.role in spec.readers:
                allow(p, "topic", topics.name(spec), "READ", "DESCRIBE")
        if writes:
            allow(p, "cluster", CLUSTER, "IDEMPOTENT_WRITE")
        for group in context.groups.get(p.role, ()):
            allow(p, "group", group.name, "READ", "DESCRIBE", pattern=group.pattern)
        if p.role == "evaluator":
            prefix = (f"{context.evaluator_group}.{p.instance}-" if p.instance
                      else f"{context.evaluator_group}.")
            allow(p, "transactional_id", prefix, "WRITE", "DESCRIBE", pattern="prefixed")
        if p.role == "intake":
            allow(p, "topic", topics.internal_prefix(context.intake_app_id),
                  "CREATE", "READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS", pattern="prefixed")
    return sorted(acls)


def acls_to_json(acls: Iterable[Acl]) -> list[dict[str, str]]:
    """The plan as JSON-ready rows."""
    return [asdict(acl) for acl in acls]


def format_table(acls: Sequence[Acl]) -> str:
    """The plan as an aligned table."""
    header = ("PRINCIPAL", "ROLE", "RESOURCE", "PATTERN", "NAME", "OPERATION")
    rows = [header] + [(a.principal, a.role, a.resource, a.pattern, a.name, a.operation)
                       for a in acls]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip()
                     for row in rows)


def existing_acls(kafka: KafkaSettings, timeout_s: float = 30.0) -> set[tuple[str, ...]]:
    """The ALLOW ACLs the broker holds, as :meth:`Acl.key` tuples (others ignored)."""
    from speechstream.kafka.admin import admin_client

    kinds = {v: k for k, v in _RESOURCE_TYPES.items()}
    patterns = {v: k for k, v in _PATTERNS.items()}
    query = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    admin = admin_client(kafka)  # kept until the answer: a destroyed handle answers nothing
    try:
        bindings = admin.describe_acls(query, request_timeout=timeout_s).result(
            timeout=timeout_s)
    except KafkaException as exc:
        raise AclError(f"cannot list the broker's ACLs: {exc.args[0]}") from exc
    keys: set[tuple[str, ...]] = set()
    for b in bindings:
        if (b.permission_type != AclPermissionType.ALLOW or b.restype not in kinds
                or b.resource_pattern_type not in patterns):
            continue
        keys.add((b.principal, kinds[b.restype], patterns[b.resource_pattern_type], b.name,
                  b.operation.name))
    return keys


def apply_acls(kafka: KafkaSettings, acls: Sequence[Acl], timeout_s: float = 30.0) -> list[Acl]:
    """Create the ACLs the broker does not hold yet; the ones created (idempotent)."""
    from speechstream.kafka.admin import admin_client

    held = existing_acls(kafka, timeout_s)
    # One principal in two roles (an operator who is also the chain adapter) needs some
    # ACLs twice: the broker keeps one.
    missing = list({acl.key(): acl for acl in acls if acl.key() not in held}.values())
    if not missing:
        return []
    admin = admin_client(kafka)
    futures = admin.create_acls([acl.binding() for acl in missing], request_timeout=timeout_s)
    errors: list[str] = []
    for binding, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            errors.append(f"{binding}: {exc.args[0]}")
    if errors:
        raise AclError(f"the broker refused {len(errors)} ACLs: " + "; ".join(errors[:5]))
    # The controller has them; the broker enforces them once it has applied the metadata.
    deadline = time.monotonic() + timeout_s
    while not {acl.key() for acl in missing} <= existing_acls(kafka, timeout_s):
        if time.monotonic() > deadline:
            raise AclError(f"the broker does not list the {len(missing)} ACLs created within "
                           f"{timeout_s:.0f}s")
        time.sleep(0.2)
    return missing
