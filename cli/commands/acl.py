"""`speechstream acl plan | apply`: the broker's ACLs, derived from the topic registry's
writers and readers (``speechstream.kafka.acl``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.exceptions import UsageError
from consumers.scored import CONSUMER_NAME as EVALUATOR_SCORED_READER
from consumers.settings import AuditSettings, EvaluatorSettings, ValidatorSettings
from producers.operator import REGISTRY_READER
from producers.rescore import PRODUCER_NAME as RESCORE_NAME
from schemas.topics import TRUST
from sinks.settings import SinkSettings
from speechstream.exceptions import AclError
from speechstream.kafka.acl import (
    Acl,
    AclContext,
    GroupPattern,
    Principal,
    acls_to_json,
    apply_acls,
    default_principals,
    derive_acls,
    format_table,
    load_principals,
)
from speechstream.settings import AclSettings, KafkaSettings
from speechstream.trust import TRUST_READER
from streams.chain import CONSUMER_NAME as CHAIN_READER
from streams.deadletter import CONSUMER_NAME as STREAMS_NAME
from streams.settings import StreamsSettings
from streams.worker import ACTIVE_VERSION_READER

PRINCIPALS_HELP = (
    "a JSON file: an object role → list of principals, each 'User:name' or "
    "{'principal': 'User:name', 'id': '<evaluator or validator id>'} "
    "(default $SPEECHSTREAM_ACL_PRINCIPALS_FILE; without either, one principal a role, "
    "User:<role>)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``acl`` command group."""
    acl = subparsers.add_parser(
        "acl", help="the broker's ACLs, derived from the topic registry",
        description="Derive the ACLs each role needs from schemas/topics.py (who writes and "
        "who reads each topic), the consumer groups and transactional ids of the services' "
        "settings, and a mapping role → principals. Roles: miner, intake, evaluator, "
        "auditor, sink, validator, api, operator, chain. See docs/security.md.",
    )
    sub = acl.add_subparsers(dest="acl_command", required=True, metavar="{plan,apply}")
    plan = sub.add_parser("plan", help="print the ACLs (nothing is changed)")
    plan.add_argument("--principals", type=Path, help=PRINCIPALS_HELP)
    plan.add_argument("--json", action="store_true", help="one JSON list of ACLs")
    plan.set_defaults(func=_plan)
    apply = sub.add_parser(
        "apply", help="create the ACLs the broker does not hold yet (idempotent)",
        description="Create the plan's ACLs with the AdminClient on $KAFKA_BOOTSTRAP_SERVERS "
        "(authenticated as a super user: KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*). ACLs the "
        "broker holds already are left as they are; none is removed.",
    )
    apply.add_argument("--principals", type=Path, help=PRINCIPALS_HELP)
    apply.set_defaults(func=_apply)


def context(
    kafka: KafkaSettings, *, streams: StreamsSettings | None = None,
    evaluator: EvaluatorSettings | None = None, sink: SinkSettings | None = None,
    validator: ValidatorSettings | None = None,
) -> AclContext:
    """The topic prefix, the intake's app id, the evaluators' group and each role's consumer
    groups, from the services' settings (given, else the environment's)."""
    streams = streams or StreamsSettings()
    evaluator = evaluator or EvaluatorSettings()
    sink = sink or SinkSettings()
    validator = validator or ValidatorSettings()
    prefixed = "prefixed"
    trust = GroupPattern(TRUST_READER)  # every reader of trusted keys (speechstream.trust)
    return AclContext(
        topic_prefix=kafka.topic_prefix,
        intake_app_id=streams.app_id,
        evaluator_group=evaluator.group_id,
        groups={role: (*patterns, trust) if role in TRUST.readers else patterns
                for role, patterns in {
            "intake": (GroupPattern(f"{kafka.topic_prefix}{streams.app_id}"),
                       GroupPattern(ACTIVE_VERSION_READER), GroupPattern(CHAIN_READER),
                       GroupPattern(STREAMS_NAME)),
            "evaluator": (GroupPattern(evaluator.group_id),
                          GroupPattern(EVALUATOR_SCORED_READER)),
            "auditor": (GroupPattern(AuditSettings().group_id),),
            "sink": (GroupPattern(sink.group_id, prefixed),),
            "validator": (GroupPattern(validator.client_name, prefixed),),
            "api": (),
            "operator": (GroupPattern(RESCORE_NAME, prefixed), GroupPattern(CHAIN_READER),
                         GroupPattern(REGISTRY_READER)),
        }.items()},
    )


def principals(path: Path | None) -> list[Principal]:
    """The mapping of ``--principals``, else of the setting, else one principal a role."""
    path = path or AclSettings().principals_file
    if path is None:
        return default_principals()
    try:
        return load_principals(path)
    except AclError as exc:
        raise UsageError(str(exc)) from exc


def plan_acls(path: Path | None, kafka: KafkaSettings) -> list[Acl]:
    """The ACLs of ``speechstream acl plan``."""
    return derive_acls(principals(path), context(kafka))


def _plan(args: argparse.Namespace) -> int:
    acls = plan_acls(args.principals, KafkaSettings())
    if args.json:
        print(json.dumps(acls_to_json(acls), indent=2))
    else:
        print(format_table(acls))
        print(f"{len(acls)} ACLs for {len({a.principal for a in acls})} principals")
    return 0


def _apply(args: argparse.Namespace) -> int:
    kafka = KafkaSettings()
    acls = plan_acls(args.principals, kafka)
    created = apply_acls(kafka, acls)
    print(f"{len(created)} ACLs created, {len(acls) - len(created)} held already "
          f"({len(acls)} in the plan) on {kafka.bootstrap_servers}")
    return 0
