"""A broker that authenticates (SASL/SCRAM-SHA-512, over plaintext and over TLS) and
authorizes (StandardAuthorizer, deny what no ACL allows) enforces the ACLs `speechstream acl
apply` derives from the registry.

Its own broker (devstack.kafka.KafkaNode with BrokerSecurity), not the session's plaintext one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from cli.commands.acl import context as acl_context
from cli.main import main
from devstack.kafka import BrokerSecurity, KafkaNode, SaslUser, broker_answers
from devstack.tls import generate_tls
from schemas.topics import ALL_TOPICS
from speechstream.exceptions import ConsumeError
from speechstream.kafka.acl import apply_acls, derive_acls, existing_acls, parse_principals
from speechstream.kafka.admin import create_topics
from speechstream.kafka.reader import ledger_topics, read_log
from speechstream.settings import DevSettings, KafkaSettings
from tests.conftest import pick_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PREFIX = "acl."
EVALUATOR_GROUP = "speechstream-evaluators"
USERS = ("miner", "evaluator-1", "evaluator-2", "validator-1", "nobody")


@dataclass(frozen=True)
class SecureBroker:
    node: KafkaNode
    security: BrokerSecurity

    def settings(self, user: str) -> KafkaSettings:
        env = self.security.client_environment(self.security.user(user))
        return KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=self.node.bootstrap_servers,
                             SPEECHSTREAM_TOPIC_PREFIX=PREFIX, **env)

    def config(self, user: str, **extra: object) -> dict[str, object]:
        return self.settings(user).producer_config(**{"log_level": 0, **extra})


@pytest.fixture(scope="module", params=["SASL_PLAINTEXT", "SASL_SSL"])
def broker(request: pytest.FixtureRequest) -> Iterator[SecureBroker]:
    base = Path(tempfile.mkdtemp(prefix="speechstream-acl-"))
    port, controller_port = pick_ports(2)
    tls = generate_tls(base / "tls") if request.param == "SASL_SSL" else None
    security = BrokerSecurity(users=tuple(SaslUser(name) for name in USERS), tls=tls)
    node = KafkaNode(base, DevSettings().cache_dir, port, controller_port, heap="512m",
                     security=security)
    try:
        node.start()
        node.wait_ready(90)
        secure = SecureBroker(node, security)
        create_topics(secure.settings("admin"))
        principals = parse_principals({
            "miner": ["User:miner"],
            "evaluator": [{"principal": "User:evaluator-1", "id": "e1"},
                          {"principal": "User:evaluator-2", "id": "e2"}],
            "validator": [{"principal": "User:validator-1", "id": "v1"}],
        })
        # The groups and transactional ids of the services' settings, as `acl plan` has them.
        context = replace(acl_context(secure.settings("admin")), evaluator_group=EVALUATOR_GROUP)
        acls = derive_acls(principals, context)
        assert len(apply_acls(secure.settings("admin"), acls)) == len(acls)
        assert apply_acls(secure.settings("admin"), acls) == []  # idempotent
        yield secure
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


def produce(config: dict[str, object], topic: str) -> KafkaError | None:
    """Send one record; the delivery's error (None: the broker took it)."""
    errors: list[KafkaError | None] = []
    producer = Producer({**config, "message.timeout.ms": 15_000})
    producer.produce(topic, b"{}", key=b"k", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(30)
    assert errors, f"no delivery report for {topic}"
    return errors[0]


def test_a_miner_writes_its_topics_and_nothing_else(broker: SecureBroker) -> None:
    miner = broker.config("miner", **{"enable.idempotence": True})
    assert produce(miner, f"{PREFIX}submissions") is None
    assert produce(miner, f"{PREFIX}registrations") is None
    for topic in ("scores", "scoring.active", "weights", "evaluation.requests"):
        err = produce(broker.config("miner"), f"{PREFIX}{topic}")
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic


def test_a_principal_without_acls_can_do_nothing(broker: SecureBroker) -> None:
    nobody = broker.config("nobody")
    err = produce(nobody, f"{PREFIX}submissions")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # It sees no topic, and cannot create one.
    admin = AdminClient(nobody)
    assert not [t for t in admin.list_topics(timeout=10).topics if t.startswith(PREFIX)]
    assert {spec.name for spec in ALL_TOPICS}  # the registry's topics exist, unseen


def test_an_evaluator_writes_scores_under_its_own_transactional_ids_only(
    broker: SecureBroker,
) -> None:
    own = Producer(broker.config("evaluator-1", **{
        "transactional.id": f"{EVALUATOR_GROUP}.e1-cpu", "transaction.timeout.ms": 30_000}))
    own.init_transactions(30)
    own.begin_transaction()
    own.produce(f"{PREFIX}scores", b"{}", key=b"h")
    own.commit_transaction(30)

    other = Producer(broker.config("evaluator-1", **{
        "transactional.id": f"{EVALUATOR_GROUP}.e2-cpu", "transaction.timeout.ms": 30_000}))
    with pytest.raises(KafkaException) as refused:
        other.init_transactions(30)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    # An evaluator may not write what the validators or the operator write.
    err = produce(broker.config("evaluator-2"), f"{PREFIX}weights")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_unauthenticated_clients_are_refused(broker: SecureBroker) -> None:
    bootstrap = broker.node.bootstrap_servers
    assert broker_answers(bootstrap, timeout_s=10, config=broker.security.client_config())
    assert not broker_answers(bootstrap, timeout_s=5)  # PLAINTEXT
    wrong = {**broker.security.client_config(broker.security.user("miner")),
             "sasl.password": "not-the-password"}
    assert not broker_answers(bootstrap, timeout_s=5, config=wrong)
    if broker.security.tls is not None:  # TLS: a client that does not trust the local CA
        untrusting = {k: v for k, v in broker.security.client_config().items()
                      if k != "ssl.ca.location"}
        assert not broker_answers(bootstrap, timeout_s=5, config=untrusting)


def test_a_validator_reads_the_ledger_topics_whole_under_its_group_name(
    broker: SecureBroker, caplog: pytest.LogCaptureFixture,
) -> None:
    validator = broker.settings("validator-1")
    read_log(validator, ledger_topics(validator), lambda _env: None,
             name="speechstream-validator", limit_s=30)
    assert "AUTHORIZATION_FAILED" not in caplog.text
    # Under a group.id outside its ACLs it still reads (it joins no group), but librdkafka
    # looks the group up and the broker refuses: what the group ACL is for.
    read_log(validator, [validator.topics.scores], lambda _env: None,
             name="someone-else", limit_s=30)
    assert "GROUP_AUTHORIZATION_FAILED" in caplog.text
    with pytest.raises(ConsumeError):  # a miner reads nothing
        read_log(broker.settings("miner"), [validator.topics.scores], lambda _env: None,
                 name="speechstream-validator", limit_s=10)


def test_acl_apply_command_creates_only_what_is_missing(
    broker: SecureBroker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in broker.security.client_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.node.bootstrap_servers)
    monkeypatch.setenv("SPEECHSTREAM_TOPIC_PREFIX", PREFIX)
    principals = tmp_path / "principals.json"
    principals.write_text(json.dumps({"miner": ["User:miner"], "chain": ["User:chain"]}))
    assert main(["acl", "apply", "--principals", str(principals)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 ACLs created, 5 held already (8 in the plan)"), out
    assert main(["acl", "apply", "--principals", str(principals)]) == 0
    assert capsys.readouterr().out.startswith("0 ACLs created, 8 held already")


def test_credentials_add_rotate_and_remove_a_miner_with_a_produce_quota(
    broker: SecureBroker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in broker.security.client_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.node.bootstrap_servers)
    monkeypatch.setenv("SPEECHSTREAM_TOPIC_PREFIX", PREFIX)
    name = f"carol-{broker.security.protocol.lower().replace('_', '-')}"

    def login(password: str) -> dict[str, object]:
        return {**broker.security.client_config(), "sasl.username": name,
                "sasl.password": password}

    assert main(["credentials", "add", "--role", "miner", "--name", name,
                 "--producer-byte-rate", "1024"]) == 0
    out = capsys.readouterr().out
    assert "ACLs created, produce quota 1024 bytes/s" in out, out
    password = out.split("KAFKA_SASL_PASSWORD=")[1].split()[0]
    config = {**login(password), "bootstrap.servers": broker.node.bootstrap_servers,
              "log_level": 0}
    assert produce(config, f"{PREFIX}submissions") is None
    err = produce(config, f"{PREFIX}scores")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Past its quota the broker throttles it.
    throttled: list[float] = []
    flooder = Producer({**config, "throttle_cb": lambda e: throttled.append(e.throttle_time)})
    for _ in range(40):
        flooder.produce(f"{PREFIX}submissions", b"x" * 4096, key=b"k")
        flooder.poll(0)
    flooder.flush(60)
    deadline = time.monotonic() + 20
    while not throttled and time.monotonic() < deadline:
        flooder.produce(f"{PREFIX}submissions", b"x" * 4096, key=b"k")
        flooder.flush(10)
    assert throttled and max(throttled) > 0

    assert main(["credentials", "rotate", "--name", name]) == 0
    rotated = capsys.readouterr().out.split("KAFKA_SASL_PASSWORD=")[1].split()[0]
    bootstrap = broker.node.bootstrap_servers
    assert not broker_answers(bootstrap, timeout_s=5, config=login(password))
    assert broker_answers(bootstrap, timeout_s=10, config=login(rotated))
    assert name in (main(["credentials", "list"]) == 0 and capsys.readouterr().out)

    assert main(["credentials", "remove", "--name", name]) == 0
    assert "removed with" in capsys.readouterr().out
    assert not broker_answers(bootstrap, timeout_s=5, config=login(rotated))
    assert not [key for key in existing_acls(broker.settings("admin"))
                if key[0] == f"User:{name}"]
