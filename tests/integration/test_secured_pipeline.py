"""The whole pipeline on a broker that authenticates (SASL/SCRAM-SHA-512 over TLS) and
authorizes (deny what no ACL allows, the ACLs `speechstream acl` derives from the registry),
every service under its own least-privilege principal and signing with its own trusted key;
then the attacks of a miner, a second evaluator and a second validator, each with its own
credentials: refused by the broker, or dead-lettered by the readers with the reason, and the
honest miners' rows, scores and weights unchanged.

Its own broker (devstack.kafka.KafkaNode with BrokerSecurity), not the session's plaintext one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from psycopg import sql

from cli.commands.acl import context as acl_context
from devstack.databases import with_database
from devstack.kafka import BrokerSecurity, KafkaNode, SaslUser
from devstack.tls import generate_tls
from producers.miner import registration, submission
from producers.trust import publish_trusted
from schemas.codec import encode
from schemas.envelope import Envelope, new_envelope
from schemas.events import (
    ChainBlock,
    EvaluationCancelled,
    EvaluationRequested,
    MinerboardUpdated,
    ScoreComputed,
    ScoringActivated,
    SubmissionFailed,
    WeightEntry,
    WeightsComputed,
)
from schemas.fields import RejectionCode
from speechstream.kafka.acl import apply_acls, derive_acls, parse_principals
from speechstream.kafka.admin import create_topics
from speechstream.kafka.producer import EventProducer
from speechstream.keys import create_key_file
from speechstream.settings import DevSettings, KafkaSettings
from speechstream.signer import Signer
from tests.conftest import pick_ports
from tests.integration.databases import drop_database
from tests.integration.pipeline import Pipeline
from tests.trust_support import Keys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PREFIX = "sec."
SCORER = "tests.scorers:DeterministicScorer"
EVALUATOR_ID, OTHER_EVALUATOR_ID = "ev1", "ev2"
EVALUATOR_NAME = f"{EVALUATOR_ID}-cpu"  # what its scores name (evaluator id and device)
VALIDATOR_ID, OTHER_VALIDATOR_ID = "v1", "v2"
EPOCH_BLOCKS = 100
USERS = ("miner", "mallory", "intake", "evaluator-1", "evaluator-2", "sink", "validator-1",
         "validator-2", "api", "operator", "chain")
PRINCIPALS: dict[str, Any] = {
    "miner": ["User:miner", "User:mallory"],
    "intake": ["User:intake"],
    "evaluator": [{"principal": "User:evaluator-1", "id": EVALUATOR_ID},
                  {"principal": "User:evaluator-2", "id": OTHER_EVALUATOR_ID}],
    "sink": ["User:sink"],
    "validator": [{"principal": "User:validator-1", "id": VALIDATOR_ID},
                  {"principal": "User:validator-2", "id": OTHER_VALIDATOR_ID}],
    "api": ["User:api"],
    "operator": ["User:operator"],
    "chain": ["User:chain"],
}


@dataclass
class Secured:
    """The secured broker, its users, the trusted keys and the run's database."""

    node: KafkaNode
    security: BrokerSecurity
    keys: Keys
    conninfo: str
    workdir: Path

    def env(self, user: str) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.node.bootstrap_servers,
                "SPEECHSTREAM_TOPIC_PREFIX": PREFIX,
                **self.security.client_environment(self.security.user(user))}

    def settings(self, user: str) -> KafkaSettings:
        return KafkaSettings(**self.env(user))

    def send(self, user: str, topic: str, *envelopes: Envelope,
             signer: Signer | None = None) -> None:
        with EventProducer(self.settings(user), signer=signer) as producer:
            for env in envelopes:
                producer.send(getattr(producer_topics(), topic), env)
            producer.flush()

    def query(self, statement: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.conninfo) as conn:
            return conn.execute(statement, params or None).fetchall()  # type: ignore[arg-type]


def producer_topics():  # noqa: ANN201 - the registry under this module's prefix
    return KafkaSettings(SPEECHSTREAM_TOPIC_PREFIX=PREFIX).topics


@pytest.fixture(scope="module")
def secured(database_url: str, template_database: str) -> Iterator[Secured]:
    base = Path(tempfile.mkdtemp(prefix="speechstream-secured-"))
    port, controller_port = pick_ports(2)
    security = BrokerSecurity(users=tuple(SaslUser(name) for name in USERS),
                              tls=generate_tls(base / "tls"))
    node = KafkaNode(base / "kafka", DevSettings().cache_dir, port, controller_port,
                     heap="512m", security=security)
    database = f"speechstream_secured_{port}"
    try:
        node.start()
        node.wait_ready(90)
        keys = Keys.create(base / "keys")
        for role, name in (("intake", "intake"), ("evaluator", EVALUATOR_NAME),
                           ("evaluator", f"{OTHER_EVALUATOR_ID}-cpu"), ("sink", "sink"),
                           ("validator", VALIDATOR_ID), ("validator", OTHER_VALIDATOR_ID),
                           ("api", "api"), ("chain", "chain")):
            keys.add(role, name)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(database), sql.Identifier(template_database)))
        secure = Secured(node, security, keys, with_database(database_url, database), base)
        admin = secure.settings("admin")
        create_topics(admin)
        acls = derive_acls(parse_principals(PRINCIPALS), acl_context(admin))
        apply_acls(admin, acls)
        keys.publish(secure.settings("operator"))  # the operator's principal writes the set
        yield secure
    finally:
        node.stop()
        drop_database(database_url, database)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def running(secured: Secured) -> Iterator[dict[str, Any]]:
    """The services, each as its own principal with its own key; the honest miners
    registered, their submissions scored, and the weights of one epoch published."""
    kafka = secured.settings("admin")
    pipe = Pipeline(kafka, secured.conninfo, secured.workdir)
    for name in ("SPEECHSTREAM_SINK_GROUP_ID", "SPEECHSTREAM_EVALUATOR_GROUP_ID"):
        pipe.env.pop(name)  # the default groups: the ones the ACL plan allows
    k = secured.keys
    pipe.start("streams", ["streams", "worker"], **secured.env("intake"),
               **k.env("intake", "intake"))
    pipe.start("evaluator", ["evaluator", "run", "--device", "cpu", "--scorer", SCORER],
               **secured.env("evaluator-1"), **k.env("evaluator", EVALUATOR_NAME),
               SPEECHSTREAM_EVALUATOR_EVALUATOR_ID=EVALUATOR_ID)
    pipe.start("sink", ["sink", "run"], **secured.env("sink"), **k.env("sink", "sink"))
    validator_env = {**secured.env("validator-1"), **k.env("validator", VALIDATOR_ID),
                     "SPEECHSTREAM_VALIDATOR_VALIDATOR_ID": VALIDATOR_ID,
                     "SPEECHSTREAM_VALIDATOR_EPOCH_BLOCKS": str(EPOCH_BLOCKS)}
    pipe.start("validator", ["validator", "run"], **validator_env)
    api_port = pick_ports(1)[0]
    pipe.start("api", ["api", "run", "--port", str(api_port)], **secured.env("api"),
               **k.env("api", "api"))
    try:
        miners = {name: create_key_file(secured.workdir / f"{name}.json")
                  for name in ("alice", "bob", "mallory")}
        secured.send("miner", "registrations",
                     registration(miners["alice"], uid=0, block=10),
                     registration(miners["bob"], uid=1, block=10))
        secured.send("mallory", "registrations",
                     registration(miners["mallory"], uid=2, block=10))
        pipe.wait(lambda: _count(secured, "miners") == 3, "3 registered miners")
        subs = {name: submission(key, repo_namespace=name, repo_name="tts", block=1000)
                for name, key in miners.items()}
        secured.send("miner", "submissions", subs["alice"], subs["bob"])
        secured.send("mallory", "submissions", subs["mallory"])
        pipe.wait(lambda: _count(secured, "submissions", "status = 'COMPLETED'") == 3,
                  "3 COMPLETED submissions under per-service principals", timeout_s=300)
        head = 1000 + EPOCH_BLOCKS
        secured.send("chain", "chain_blocks",
                     new_envelope(ChainBlock(block=head), key=None, producer="test"),
                     signer=k.signer("chain", "chain"))
        pipe.wait(lambda: _count(secured, "weights") >= 1, "the validator's weights",
                  timeout_s=120)
        yield {"pipe": pipe, "miners": miners, "subs": subs, "head": head,
               "api": f"http://127.0.0.1:{api_port}", "validator_env": validator_env}
    finally:
        pipe.stop()


def _count(secured: Secured, table: str, where: str = "true") -> int:
    return secured.query(f"SELECT count(*) FROM {table} WHERE {where}")[0][0]  # noqa: S608


def _board(secured: Secured) -> list[tuple]:
    return secured.query("SELECT hash, uid, status, score FROM submissions ORDER BY uid")


def _weights(api: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{api}/weights?validator={VALIDATOR_ID}", timeout=10) as r:
        return json.loads(r.read())


def _refused_by_broker(secured: Secured, user: str, topic: str, env: Envelope) -> bool:
    errors: list[KafkaError | None] = []
    producer = Producer(secured.settings(user).producer_config(**{
        "message.timeout.ms": 15_000, "log_level": 0}))
    producer.produce(getattr(producer_topics(), topic), encode(env), key=b"k",
                     on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(30)
    return bool(errors) and errors[0] is not None and (
        errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED)


def test_the_whole_pipeline_runs_under_least_privilege_principals(running, secured) -> None:
    board = _board(secured)
    assert [(uid, status) for _, uid, status, _ in board] == [
        (0, "COMPLETED"), (1, "COMPLETED"), (2, "COMPLETED")]
    vector = _weights(running["api"])
    assert vector["validator"] == VALIDATOR_ID and vector["uids"] == [0, 1, 2]
    # Nothing was refused on the honest path: no dead letter, no authorization error.
    assert _count(secured, "dead_letters") == 0
    for service in running["pipe"].services:
        log = service.log_path.read_text()
        assert "AUTHORIZATION_FAILED" not in log, service.name
        assert "untrusted" not in log, service.name


def _forged_score(hash_: str, evaluator: str, total: float) -> Envelope:
    return new_envelope(ScoreComputed(hash=hash_, status="COMPLETED", total_score=total,
                                      evaluator=evaluator, request_event_id="forged"),
                        key=hash_, producer="attacker")


def test_a_miner_can_write_only_its_own_topics(running, secured) -> None:
    alice = running["subs"]["alice"].payload
    activation = new_envelope(ScoringActivated(scoring_version="v1"), key="active",
                              producer="attacker")
    request = new_envelope(EvaluationRequested(
        hash="7", hotkey=alice.hotkey, uid=0, repo_namespace="x", repo_name="y", block=1000,
        source_event_id="forged"), key="7", producer="attacker")
    for topic, env in (("scores", _forged_score(alice.hash, EVALUATOR_NAME, 1.0)),
                       ("scoring_active", activation), ("evaluation_requests", request),
                       ("rescores", request), ("weights", new_envelope(
                           WeightsComputed.of(VALIDATOR_ID, 99, 9900, []), key=VALIDATOR_ID,
                           producer="attacker")),
                       ("miners", running["subs"]["mallory"]), ("trust", activation)):
        assert _refused_by_broker(secured, "mallory", topic, env), topic
    # It cannot join the evaluators' group (and so take their requests) …
    consumer = Consumer(secured.settings("mallory").to_librdkafka(**{
        "group.id": "speechstream-evaluators", "log_level": 0}))
    consumer.subscribe([producer_topics().evaluation_requests])
    msg = consumer.poll(10)
    consumer.close()
    assert msg is not None and msg.error() is not None
    assert msg.error().code() in (KafkaError.GROUP_AUTHORIZATION_FAILED,
                                  KafkaError.TOPIC_AUTHORIZATION_FAILED)
    # … nor fence an evaluator with its transactional id.
    fencer = Producer(secured.settings("mallory").producer_config(**{
        "transactional.id": f"speechstream-evaluators.{EVALUATOR_NAME}", "log_level": 0}))
    with pytest.raises(KafkaException) as refused:
        fencer.init_transactions(30)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_a_second_evaluator_cannot_speak_for_the_first_nor_cancel(running, secured) -> None:
    before = _board(secured)
    bob = running["subs"]["bob"].payload
    second = secured.keys.signer("evaluator", f"{OTHER_EVALUATOR_ID}-cpu")
    outsider = Signer.from_key_file(secured.keys.directory / "evaluator-ev2-cpu.json")
    untrusted_path = secured.workdir / "untrusted.json"
    create_key_file(untrusted_path)
    untrusted = Signer.from_key_file(untrusted_path)
    assert outsider == second
    # Its principal may write scores, but its key may not name the first evaluator, an
    # untrusted key may not speak at all, and an unsigned score counts for nothing.
    secured.send("evaluator-2", "scores", _forged_score(bob.hash, EVALUATOR_NAME, 0.999),
                 signer=second)
    secured.send("evaluator-2", "scores", _forged_score(bob.hash, EVALUATOR_NAME, 0.998),
                 signer=untrusted)
    secured.send("evaluator-2", "scores", _forged_score(bob.hash, EVALUATOR_NAME, 0.997))
    cancel = new_envelope(EvaluationCancelled(
        hash=bob.hash, request_event_id="x", hotkey=bob.hotkey, uid=1, block=1000,
        code=RejectionCode.DUPLICATE_REPO, reason="forged", displaced_by="y",
        displaced_by_hash="9"), key=bob.hash, producer="attacker")
    assert _refused_by_broker(secured, "evaluator-2", "cancellations", cancel)
    running["pipe"].wait(lambda: _count(secured, "dead_letters", "error LIKE 'untrusted:%'")
                         >= 3, "the forged scores dead-lettered", timeout_s=60)
    reasons = [r[0] for r in secured.query(
        "SELECT error FROM dead_letters WHERE topic = %s ORDER BY written_at",
        (producer_topics().scores,))]
    assert any("names evaluator 'ev1-cpu' but is signed by evaluator 'ev2-cpu'" in r
               for r in reasons), reasons
    assert any("a key the operator does not trust" in r for r in reasons), reasons
    assert any(r.startswith("untrusted: unsigned score.computed") for r in reasons), reasons
    assert _board(secured) == before


def test_a_second_validator_cannot_write_the_firsts_vector(running, secured) -> None:
    before = _weights(running["api"])
    forged = new_envelope(WeightsComputed.of(VALIDATOR_ID, 2**31 - 1, 2**31 - 1, [
        WeightEntry(uid=2, weight=1.0)]), key=VALIDATOR_ID, producer="attacker")
    other = secured.keys.signer("validator", OTHER_VALIDATOR_ID)
    secured.send("validator-2", "weights", forged, signer=other)
    secured.send("validator-2", "weights", forged)
    board = new_envelope(MinerboardUpdated(hash="5", uid=0, hotkey="forged", block=1),
                         key="0", producer="attacker")
    secured.send("validator-2", "minerboard", board)
    running["pipe"].wait(
        lambda: _count(secured, "dead_letters", "error LIKE 'untrusted:%' AND topic IN "
                       f"('{PREFIX}weights', '{PREFIX}minerboard')") >= 3,
        "the forged vectors and minerboard entry dead-lettered", timeout_s=60)
    assert _weights(running["api"]) == before
    # The restarted validator, which reads its last epoch back from the weights topic, is not
    # stopped by the forged epoch: the next epoch's vector is published.
    pipe = running["pipe"]
    validator = next(s for s in pipe.services if s.name == "validator")
    validator.stop()
    pipe.start("validator", ["validator", "run"], **running["validator_env"])
    head = running["head"] + EPOCH_BLOCKS
    secured.send("chain", "chain_blocks",
                 new_envelope(ChainBlock(block=head), key=None, producer="test"),
                 signer=secured.keys.signer("chain", "chain"))
    pipe.wait(lambda: _weights(running["api"])["epoch"] == head // EPOCH_BLOCKS,
              "the next epoch's vector after a restart", timeout_s=120)
    assert _weights(running["api"])["uids"] == before["uids"]


def test_a_rogue_evaluator_cannot_free_a_window_unsigned(running, secured) -> None:
    alice = running["subs"]["alice"].payload
    failed = new_envelope(SubmissionFailed(
        hash=alice.hash, hotkey=alice.hotkey, block=1000, scoring_version="v2",
        score_event_id="forged"), key=alice.hotkey, producer="attacker")
    assert _refused_by_broker(secured, "mallory", "failed", failed)
    secured.send("evaluator-2", "failed", failed)  # its principal may; unsigned, it counts not
    running["pipe"].wait(lambda: _count(
        secured, "dead_letters", "error LIKE 'untrusted: unsigned submission.failed%'") == 1,
        "the forged submission.failed dead-lettered", timeout_s=60)
    # A head the new submission's block lies within (the block window), then the submission:
    # alice's window is still held by her first one.
    head = running["head"] + 2 * EPOCH_BLOCKS
    secured.send("chain", "chain_blocks",
                 new_envelope(ChainBlock(block=head), key=None, producer="test"),
                 signer=secured.keys.signer("chain", "chain"))
    time.sleep(1)
    again = submission(running["miners"]["alice"], repo_namespace="alice", repo_name="tts2",
                       block=head)
    secured.send("miner", "submissions", again)
    running["pipe"].wait(lambda: _count(secured, "rejections", "code = 'RATE_LIMITED'") == 1,
                         "alice's second submission rate-limited", timeout_s=60)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert _count(secured, "submissions", "repo_name = 'tts2'") == 0
        time.sleep(0.5)


def test_a_revoked_evaluator_key_counts_for_nothing_after_a_rebuild(running, secured) -> None:
    # Last in this module: the operator removes the honest evaluator's key (trusted set
    # version 2), and a rebuild of PostgreSQL from the log drops every status and score it
    # signed, before and after; the submissions are back to QUEUED.
    keys = secured.keys
    remaining = [entry for entry in keys.entries() if entry.name != EVALUATOR_NAME]
    publish_trusted(secured.settings("operator"), keys.operator, remaining, version=2)
    done = running["pipe"].cli("sink", "rebuild", **secured.env("sink"),
                               **keys.env("sink", "sink"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert [(uid, status) for _, uid, status, _ in _board(secured)] == [
        (0, "QUEUED"), (1, "QUEUED"), (2, "QUEUED")]
    assert _count(secured, "dead_letters", "error LIKE '%does not trust (trusted set "
                  "version 2)%'") >= 3
