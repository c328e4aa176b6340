"""The broker's SCRAM credentials: add a principal (a miner, a validator, an evaluator …) with
a password and the ACLs of its role, rotate its password, remove it with every ACL it held.

Passwords are set with the Admin API (``AlterUserScramCredentials``, SCRAM-SHA-512, 8,192
iterations); a removed user can no longer log in, and its ACLs go with it, so a new user of the
same name starts with nothing. Produce quotas (a miner's bytes a second) are the broker's
client quotas, set with Kafka's own ``ConfigCommand`` (``devstack.quotas``): the Admin API of
librdkafka has no call for them.
"""

from __future__ import annotations

import secrets
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from speechstream.exceptions import AclError
from speechstream.kafka.acl import Acl, AclContext, Principal, apply_acls, derive_acls
from speechstream.kafka.admin import admin_client
from speechstream.settings import KafkaSettings

ITERATIONS = 8192
MECHANISM = ScramMechanism.SCRAM_SHA_512
TIMEOUT_S = 30.0


def new_password() -> str:
    """A fresh random password (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def set_password(kafka: KafkaSettings, user: str, password: str) -> None:
    """Create ``user`` with ``password``, or replace its password (rotation: the old one stops
    working at once; connections already open stay until they reconnect)."""
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(MECHANISM, ITERATIONS), password.encode())
    _alter(kafka, [upsert], f"set the password of {user}")


def users(kafka: KafkaSettings) -> list[str]:
    """The SCRAM users the broker knows."""
    admin = admin_client(kafka)
    try:
        found = admin.describe_user_scram_credentials(request_timeout=TIMEOUT_S).result(
            timeout=TIMEOUT_S)
    except KafkaException as exc:
        raise AclError(f"cannot list the broker's users: {exc.args[0]}") from exc
    return sorted(found)


def add_principal(kafka: KafkaSettings, principal: Principal, context: AclContext,
                  password: str) -> list[Acl]:
    """Create the SCRAM user of ``principal`` (``User:<name>``) and the ACLs of its role;
    return the ACLs created."""
    set_password(kafka, _user(principal.name), password)
    return apply_acls(kafka, derive_acls([principal], context))


def remove_principal(kafka: KafkaSettings, principal: str) -> int:
    """Delete the SCRAM user of ``principal`` and every ACL naming it; how many ACLs went."""
    user = _user(principal)
    if user in users(kafka):
        _alter(kafka, [UserScramCredentialDeletion(user, MECHANISM)], f"remove {user}")
    admin = admin_client(kafka)
    query = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    try:
        results = admin.delete_acls([query], request_timeout=TIMEOUT_S)
        deleted = sum(len(f.result(timeout=TIMEOUT_S)) for f in results.values())
    except KafkaException as exc:
        raise AclError(f"cannot delete the ACLs of {principal}: {exc.args[0]}") from exc
    return deleted


def _user(principal: str) -> str:
    if not principal.startswith("User:") or len(principal) <= len("User:"):
        raise AclError(f"{principal!r} is not a SCRAM user's principal (User:<name>)")
    return principal.removeprefix("User:")


def _alter(kafka: KafkaSettings, alterations: list, what: str) -> None:  # type: ignore[type-arg]
    admin = admin_client(kafka)
    try:
        futures = admin.alter_user_scram_credentials(alterations, request_timeout=TIMEOUT_S)
        for future in futures.values():
            future.result(timeout=TIMEOUT_S)
    except KafkaException as exc:
        raise AclError(f"the broker refused to {what}: {exc.args[0]}") from exc
    time.sleep(0.5)  # the brokers apply the controller's record before a login sees it
