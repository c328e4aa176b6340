"""`speechstream credentials add | rotate | remove | list`: the broker's SCRAM users, one per
miner, validator, evaluator or service, each with the ACLs of its role (and a miner's produce
quota)."""

from __future__ import annotations

import argparse

from cli.commands.acl import context as acl_context
from devstack.quotas import set_producer_quota
from schemas.topics import ROLES
from speechstream.kafka.acl import Principal
from speechstream.kafka.credentials import (
    add_principal,
    new_password,
    remove_principal,
    set_password,
    users,
)
from speechstream.settings import AclSettings, DevSettings, KafkaSettings

AS_ADMIN = ("It runs as a super user of the broker ($KAFKA_BOOTSTRAP_SERVERS with "
            "KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_CA_LOCATION); see "
            "docs/security.md.")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``credentials`` command group."""
    cred = subparsers.add_parser(
        "credentials", help="the broker's SCRAM users: add, rotate, remove, list",
        description="Each miner, validator, evaluator and service logs in to the broker as "
        "its own SCRAM-SHA-512 user, allowed only what its role's ACLs allow "
        "(`speechstream acl plan`). " + AS_ADMIN,
    )
    sub = cred.add_subparsers(dest="credentials_command", required=True,
                              metavar="{add,rotate,remove,list}")
    add = sub.add_parser(
        "add", help="create a user with a new password and its role's ACLs",
        description="Create the user, print its password once (as KAFKA_SASL_USERNAME and "
        "KAFKA_SASL_PASSWORD lines for its environment), create the ACLs of its role, and "
        "give a miner a produce quota (SPEECHSTREAM_ACL_MINER_PRODUCER_BYTE_RATE bytes a "
        "second unless --producer-byte-rate says otherwise). " + AS_ADMIN,
    )
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--name", required=True, help="the user's name (principal User:<name>)")
    add.add_argument("--id", default=None,
                     help="an evaluator's or validator's id (its transactional ids and groups)")
    add.add_argument("--producer-byte-rate", type=int, default=None,
                     help="a produce quota in bytes a second (miners get one by default)")
    add.set_defaults(func=_add)
    rotate = sub.add_parser("rotate", help="give a user a new password (the old one stops "
                            "working at once)")
    rotate.add_argument("--name", required=True)
    rotate.set_defaults(func=_rotate)
    remove = sub.add_parser("remove", help="delete a user, every ACL it held and its quota")
    remove.add_argument("--name", required=True)
    remove.set_defaults(func=_remove)
    listing = sub.add_parser("list", help="the users the broker knows")
    listing.set_defaults(func=_list)


def _add(args: argparse.Namespace) -> int:
    kafka = KafkaSettings()
    password = new_password()
    principal = Principal(args.role, f"User:{args.name}", args.id)
    created = add_principal(kafka, principal, acl_context(kafka), password)
    rate = args.producer_byte_rate
    if rate is None and args.role == "miner":
        rate = AclSettings().miner_producer_byte_rate
    if rate is not None:
        set_producer_quota(kafka, args.name, rate, cache_dir=DevSettings().cache_dir)
    quota = f", produce quota {rate} bytes/s" if rate is not None else ""
    print(f"# {principal.name} ({args.role}): {len(created)} ACLs created{quota}")
    print(f"KAFKA_SASL_USERNAME={args.name}")
    print(f"KAFKA_SASL_PASSWORD={password}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    password = new_password()
    set_password(KafkaSettings(), args.name, password)
    print(f"KAFKA_SASL_USERNAME={args.name}")
    print(f"KAFKA_SASL_PASSWORD={password}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    kafka = KafkaSettings()
    deleted = remove_principal(kafka, f"User:{args.name}")
    print(f"User:{args.name} removed with {deleted} ACLs")
    return 0


def _list(_args: argparse.Namespace) -> int:
    for name in users(KafkaSettings()):
        print(name)
    return 0
