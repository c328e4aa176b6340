"""The topic registry's writers and readers, checked against the code that produces and
consumes each topic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemas.topics import (
    ALL_TOPICS,
    ROLES,
    TRUST,
    TopicRegistry,
    changelog_specs,
    topics_read_by,
    topics_written_by,
)

ROOT = Path(__file__).resolve().parents[3]

# Where each role's code talks to Kafka.
ROLE_CODE: dict[str, tuple[str, ...]] = {
    "miner": ("producers/miner.py", "cli/commands/miner.py"),
    "intake": ("streams",),
    "evaluator": ("consumers/evaluator.py", "consumers/scored.py"),
    "auditor": ("consumers/audit.py",),
    "sink": ("sinks",),
    "validator": ("consumers/validator.py",),
    "api": ("api",),
    "operator": ("producers/rescore.py", "producers/operator.py", "cli/commands/operator.py",
                 "cli/commands/rescore.py", "cli/commands/scoring.py"),
    "chain": ("cli/commands/chain.py",),
}
PROPERTIES = {
    name for name, value in vars(TopicRegistry).items() if isinstance(value, property)
}
REFERENCE = re.compile(r"(?:\btopics|\bt|\bs)\.([a-z_]+)\b")


def referenced_topics(role: str) -> set[str]:
    """The base names of the registry topics the role's code names (``topics.scores`` …)."""
    names: set[str] = set()
    registry = TopicRegistry("")
    for entry in ROLE_CODE[role]:
        path = ROOT / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            for attr in REFERENCE.findall(file.read_text()):
                if attr in PROPERTIES:
                    names.add(getattr(registry, attr))
    return names


def test_every_topic_has_a_writer_and_a_reader_from_the_known_roles() -> None:
    for spec in ALL_TOPICS + changelog_specs("speechstream-intake"):
        assert spec.writers, spec.name
        assert spec.readers, spec.name
        assert set(spec.writers) <= set(ROLES), spec.name
        assert set(spec.readers) <= set(ROLES), spec.name
        assert len(set(spec.writers)) == len(spec.writers), spec.name
        assert len(set(spec.readers)) == len(spec.readers), spec.name


def test_every_role_talks_to_some_topic() -> None:
    for role in ROLES:
        assert topics_written_by(role) or topics_read_by(role), role


@pytest.mark.parametrize("role", ROLES)
def test_the_code_of_each_role_names_only_topics_the_registry_gives_it(role: str) -> None:
    allowed = {spec.name for spec in ALL_TOPICS
               if role in spec.writers or role in spec.readers}
    assert referenced_topics(role) <= allowed


def test_the_code_names_every_topic_the_registry_gives_these_roles() -> None:
    # The roles whose code names each of its topics itself (the others read through shared
    # floor readers: the ledger's topics, the active version; every reader of trusted keys
    # through speechstream.trust).
    for role in ("miner", "auditor", "chain", "api"):
        allowed = {spec.name for spec in ALL_TOPICS
                   if role in spec.writers or role in spec.readers}
        through_floor = {"trust"} if role in TRUST.readers else set()
        assert referenced_topics(role) | through_floor == allowed, role


def test_what_the_registry_says_of_the_entry_and_decision_topics() -> None:
    by_name = {spec.name: spec for spec in ALL_TOPICS}
    assert by_name["submissions"].writers == ("miner", "api")
    assert by_name["registrations"].writers == ("miner", "operator")
    assert by_name["scores"].writers == ("evaluator",)
    assert by_name["weights"].writers == ("validator",)
    assert by_name["scoring.active"].writers == ("operator",)
    assert by_name["chain.blocks"].writers == ("chain",)
    assert {spec.name for spec in topics_written_by("miner")} == {"registrations", "submissions"}
