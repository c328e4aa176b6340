"""The dev stack's root of trust: an operator key and a key per service under the stack's state
directory (mode 0600, kept across restarts), their trusted set on the stack's ``trust`` topic,
and the environment lines that give every service its key and the root (``speechstream dev
up`` prints them with the broker's and the database's)."""

from __future__ import annotations

import shlex
from pathlib import Path

from producers.trust import publish_trusted, read_trusted
from schemas.events import TrustedKey
from speechstream.keys import Hotkey, create_key_file, load_key_file
from speechstream.settings import KafkaSettings

DEV_IDS = {"evaluator": "dev-evaluator", "validator": "dev-validator", "auditor": "dev-auditor"}
"""The ids the dev stack's environment gives the services that have one."""
SERVICES = (
    # (role, the setting of its key file, the setting of its id)
    ("intake", "SPEECHSTREAM_STREAMS_KEY_FILE", None),
    ("evaluator", "SPEECHSTREAM_EVALUATOR_KEY_FILE", "SPEECHSTREAM_EVALUATOR_EVALUATOR_ID"),
    ("auditor", "SPEECHSTREAM_AUDIT_KEY_FILE", "SPEECHSTREAM_AUDIT_AUDITOR_ID"),
    ("sink", "SPEECHSTREAM_SINK_KEY_FILE", None),
    ("validator", "SPEECHSTREAM_VALIDATOR_KEY_FILE", "SPEECHSTREAM_VALIDATOR_VALIDATOR_ID"),
    ("api", "SPEECHSTREAM_API_KEY_FILE", None),
    ("chain", "SPEECHSTREAM_CHAIN_KEY_FILE", None),
)


def trusted_name(role: str, device: str = "cpu") -> str:
    """The name the dev stack trusts ``role``'s key under (an evaluator's is its id and
    device, as its scores name it)."""
    if role == "evaluator":
        return f"{DEV_IDS['evaluator']}-{device}"
    return DEV_IDS.get(role, role)


def _key(path: Path) -> Hotkey:
    return load_key_file(path) if path.exists() else create_key_file(path)


def dev_trust(kafka: KafkaSettings, directory: Path) -> tuple[list[str], int]:
    """Keys under ``directory`` (made once), their set published when the ``trust`` topic's
    latest differs; the ``eval``-able environment lines and the set's version."""
    directory.mkdir(parents=True, exist_ok=True)
    operator = _key(directory / "operator.json")
    lines = [f"SPEECHSTREAM_TRUST_OPERATOR_KEY={operator.hotkey}",
             f"SPEECHSTREAM_OPERATOR_KEY_FILE={shlex.quote(str(directory / 'operator.json'))}"]
    wanted: list[TrustedKey] = []
    for role, key_variable, id_variable in SERVICES:
        path = directory / f"{role}.json"
        wanted.append(TrustedKey(key=_key(path).hotkey, role=role,  # type: ignore[arg-type]
                                 name=trusted_name(role)))
        lines.append(f"{key_variable}={shlex.quote(str(path))}")
        if id_variable is not None:
            lines.append(f"{id_variable}={DEV_IDS[role]}")
    current = read_trusted(kafka, operator.hotkey)
    version = current.version
    if {(k.key, k.role, k.name) for k in current.keys.values()} != {
            (k.key, k.role, k.name) for k in wanted}:
        version = publish_trusted(kafka, operator, wanted, version=version + 1,
                                  reason="speechstream dev up").version
    return lines, version
