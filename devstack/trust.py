"""The dev stack's root of trust: an operator key and a key per service under the stack's state
directory (mode 0600, kept across restarts), their trusted set on the stack's ``trust`` topic,
and the environment lines that give every service its key and the root (``speechstream dev
up`` prints them with the broker's and the database's)."""

from __future__ import annotations

import shlex
from pathlib import Path

from producers.trust import publish_trusted, read_trusted, service_keys
from speechstream.settings import KafkaSettings

DEV_IDS = {"evaluator": "dev-evaluator", "validator": "dev-validator", "auditor": "dev-auditor"}
"""The ids the dev stack's environment gives the services that have one."""
ROLES = ("intake", "evaluator", "auditor", "sink", "validator", "api", "chain")
"""Every role that signs on the dev stack."""
ID_SETTINGS = {"evaluator": "SPEECHSTREAM_EVALUATOR_EVALUATOR_ID",
               "auditor": "SPEECHSTREAM_AUDIT_AUDITOR_ID",
               "validator": "SPEECHSTREAM_VALIDATOR_VALIDATOR_ID"}


def trusted_name(role: str, device: str = "cpu") -> str:
    """The name the dev stack trusts ``role``'s key under (an evaluator's is its id and
    device, as its scores name it)."""
    if role == "evaluator":
        return f"{DEV_IDS['evaluator']}-{device}"
    return DEV_IDS.get(role, role)


def dev_trust(kafka: KafkaSettings, directory: Path) -> tuple[list[str], int]:
    """Keys under ``directory`` (made once), their set published when the ``trust`` topic's
    latest differs; the ``eval``-able environment lines and the set's version."""
    keys = service_keys(directory, {role: trusted_name(role) for role in ROLES}, fresh=False)
    env = {**keys.environment(), "SPEECHSTREAM_OPERATOR_KEY_FILE": str(keys.operator_file)}
    lines = [f"{name}={shlex.quote(value)}" for name, value in env.items()]
    lines += [f"{setting}={DEV_IDS[role]}" for role, setting in ID_SETTINGS.items()]
    current = read_trusted(kafka, keys.operator.hotkey)
    version = current.version
    if {(k.key, k.role, k.name) for k in current.keys.values()} != {
            (k.key, k.role, k.name) for k in keys.entries}:
        version = publish_trusted(kafka, keys.operator, keys.entries, version=version + 1,
                                  reason="speechstream dev up").version
    return lines, version
