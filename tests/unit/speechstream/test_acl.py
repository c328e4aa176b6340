"""ACLs derived from the topic registry (``speechstream acl plan``): pure, no broker."""

from __future__ import annotations

import json

import pytest

from schemas.topics import ALL_TOPICS, ROLES
from speechstream.exceptions import AclError
from speechstream.kafka.acl import (
    Acl,
    AclContext,
    GroupPattern,
    Principal,
    acls_to_json,
    default_principals,
    derive_acls,
    format_table,
    load_principals,
    parse_principals,
)

CONTEXT = AclContext(
    topic_prefix="p.", intake_app_id="intake-app", evaluator_group="evals",
    groups={"evaluator": (GroupPattern("evals"),),
            "validator": (GroupPattern("speechstream-validator", "prefixed"),)},
)


def topic_ops(acls: list[Acl], principal: str) -> dict[str, set[str]]:
    ops: dict[str, set[str]] = {}
    for acl in acls:
        if acl.principal == principal and acl.resource == "topic":
            ops.setdefault(acl.name, set()).add(acl.operation)
    return ops


def test_a_miner_writes_registrations_and_submissions_and_nothing_else() -> None:
    acls = derive_acls([Principal("miner", "User:alice")], CONTEXT)
    assert topic_ops(acls, "User:alice") == {
        "p.registrations": {"WRITE", "DESCRIBE"},
        "p.submissions": {"WRITE", "DESCRIBE"},
    }
    others = {(a.resource, a.name, a.operation) for a in acls if a.resource != "topic"}
    assert others == {("cluster", "kafka-cluster", "IDEMPOTENT_WRITE")}


def test_every_topic_acl_follows_the_registry() -> None:
    acls = derive_acls(default_principals(), CONTEXT)
    for spec in ALL_TOPICS:
        for role in ROLES:
            ops = topic_ops(acls, f"User:{role}").get(f"p.{spec.name}", set())
            assert ("WRITE" in ops) == (role in spec.writers), (role, spec.name)
            assert ("READ" in ops) == (role in spec.readers), (role, spec.name)
            assert ("DESCRIBE" in ops) == (role in spec.writers + spec.readers)


def test_only_evaluators_write_scores_and_only_validators_weights() -> None:
    acls = derive_acls(default_principals(), CONTEXT)
    writers = {a.role for a in acls if a.operation == "WRITE" and a.resource == "topic"
               and a.name == "p.scores"}
    assert writers == {"evaluator"}
    writers = {a.role for a in acls if a.operation == "WRITE" and a.resource == "topic"
               and a.name == "p.weights"}
    assert writers == {"validator"}


def test_each_evaluator_gets_the_transactional_ids_of_its_own_id() -> None:
    acls = derive_acls([Principal("evaluator", "User:evaluator-1", "gpu-1"),
                        Principal("evaluator", "User:evaluator-2", "gpu-2")], CONTEXT)
    txn = {(a.principal, a.pattern, a.name, a.operation) for a in acls
           if a.resource == "transactional_id"}
    assert txn == {
        ("User:evaluator-1", "prefixed", "evals.gpu-1-", "WRITE"),
        ("User:evaluator-1", "prefixed", "evals.gpu-1-", "DESCRIBE"),
        ("User:evaluator-2", "prefixed", "evals.gpu-2-", "WRITE"),
        ("User:evaluator-2", "prefixed", "evals.gpu-2-", "DESCRIBE"),
    }
    groups = {(a.principal, a.name, a.operation) for a in acls if a.resource == "group"}
    assert ("User:evaluator-1", "evals", "READ") in groups
    assert ("User:evaluator-2", "evals", "DESCRIBE") in groups
    # An evaluator given no id may use every evaluator's transactional id.
    acls = derive_acls([Principal("evaluator", "User:evaluator")], CONTEXT)
    assert {a.name for a in acls if a.resource == "transactional_id"} == {"evals."}
    # Nobody else gets a transactional id.
    acls = derive_acls(default_principals(), CONTEXT)
    assert {a.role for a in acls if a.resource == "transactional_id"} == {"evaluator"}


def test_one_validator_principal_per_validator_id() -> None:
    principals = parse_principals({"validator": [
        {"principal": "User:validator-a", "id": "a"},
        {"principal": "User:validator-b", "id": "b"},
    ]})
    acls = derive_acls(principals, CONTEXT)
    for name in ("User:validator-a", "User:validator-b"):
        ops = topic_ops(acls, name)
        assert ops["p.weights"] == {"READ", "WRITE", "DESCRIBE"}
        assert ops["p.minerboard"] == {"WRITE", "DESCRIBE"}
        assert (name, "group", "prefixed", "speechstream-validator", "READ") in {
            a.key() for a in acls}
    with pytest.raises(AclError, match="share an id"):
        parse_principals({"validator": [{"principal": "User:x", "id": "a"},
                                        {"principal": "User:y", "id": "a"}]})


def test_the_intake_owns_its_internal_topics_and_no_one_else_creates() -> None:
    acls = derive_acls(default_principals(), CONTEXT)
    creates = {(a.principal, a.pattern, a.name) for a in acls if a.operation == "CREATE"}
    assert creates == {("User:intake", "prefixed", "p.intake-app-")}
    internal = {a.operation for a in acls if a.name == "p.intake-app-"}
    assert {"CREATE", "READ", "WRITE", "DESCRIBE"} <= internal


def test_roles_that_only_read_get_no_idempotent_write() -> None:
    acls = derive_acls(default_principals(), CONTEXT)
    idempotent = {a.role for a in acls if a.operation == "IDEMPOTENT_WRITE"}
    assert idempotent == {"miner", "intake", "evaluator", "auditor", "sink", "validator",
                          "api", "operator", "chain"}
    assert len(acls) == len(set(acls))


def test_principals_file(tmp_path) -> None:
    path = tmp_path / "principals.json"
    path.write_text(json.dumps({"miner": "User:m", "evaluator": [
        {"principal": "User:e1", "id": "h1"}, "User:e"]}))
    assert load_principals(path) == [Principal("miner", "User:m"),
                                     Principal("evaluator", "User:e1", "h1"),
                                     Principal("evaluator", "User:e")]
    for bad in ({"wizard": ["User:x"]}, {"miner": ["alice"]}, {"miner": [3]},
                {"evaluator": [{"principal": "User:e", "id": ""}]}):
        with pytest.raises(AclError):
            parse_principals(bad)
    path.write_text("[1]")
    with pytest.raises(AclError):
        load_principals(path)


def test_plan_renders_as_table_and_json() -> None:
    acls = derive_acls([Principal("chain", "User:chain")], CONTEXT)
    table = format_table(acls).splitlines()
    assert table[0].split() == ["PRINCIPAL", "ROLE", "RESOURCE", "PATTERN", "NAME", "OPERATION"]
    assert len(table) == len(acls) + 1
    rows = acls_to_json(acls)
    assert {"principal": "User:chain", "resource": "topic", "pattern": "literal",
            "name": "p.chain.blocks", "operation": "WRITE", "role": "chain"} in rows
    binding = acls[0].binding()
    assert binding.principal == "User:chain"
