"""`speechstream trust` on a real broker: the operator's key, service keys added and removed,
the versions readers follow; a set not signed by the root ignored; the operator's activation
and the chain adapter's head signed so that readers accept them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from cli.main import main
from producers.trust import publish_trusted, read_trusted
from schemas.envelope import Envelope, new_envelope
from schemas.events import ChainBlock, EvaluationRequested, ScoringActivated, TrustedKey
from schemas.trust import TrustSet, refusal
from speechstream.kafka.producer import EventProducer
from speechstream.kafka.reader import read_log
from speechstream.keys import create_key_file, load_key_file
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer
from speechstream.trust import TrustStore

pytestmark = pytest.mark.integration


@pytest.fixture
def env(kafka_settings: KafkaSettings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Path:
    """The commands run in this process against the test's topics; the operator's key file
    (created by ``trust init``) is returned."""
    operator = tmp_path / "operator.json"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("SPEECHSTREAM_TOPIC_PREFIX", kafka_settings.topic_prefix)
    monkeypatch.setenv("SPEECHSTREAM_OPERATOR_KEY_FILE", str(operator))
    monkeypatch.delenv("SPEECHSTREAM_TRUST_OPERATOR_KEY", raising=False)
    monkeypatch.delenv("SPEECHSTREAM_CHAIN_KEY_FILE", raising=False)
    return operator


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status = main(list(argv))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out.strip()


def _init(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """``trust init``, its root exported as the services would."""
    line = _run(capsys, "trust", "init")
    name, _, root = line.partition("=")
    assert name == "SPEECHSTREAM_TRUST_OPERATOR_KEY"
    monkeypatch.setenv(name, root)
    return root


def _records(kafka: KafkaSettings, topic: str) -> list[tuple[Envelope, bytes]]:
    """Every record of ``topic`` with its raw bytes (nothing checked)."""
    seen: list[tuple[Envelope, bytes]] = []

    def keep(envelope: Envelope, raw: bytes, _topic: str) -> None:
        seen.append((envelope, raw))

    read_log(kafka, [topic], lambda _e: None, name="test-trust-records", verify=keep,
             limit_s=30)
    return seen


def test_init_keygen_add_show_remove(env: Path, tmp_path: Path, kafka_settings: KafkaSettings,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = _init(capsys, monkeypatch)
    assert root == load_key_file(env).hotkey
    intake = _run(capsys, "trust", "keygen", "--out", str(tmp_path / "intake.json"))
    evaluator = _run(capsys, "trust", "keygen", "--out", str(tmp_path / "gpu1.json"))
    intake_key, evaluator_key = intake.removeprefix("key="), evaluator.removeprefix("key=")
    assert "version 1" in _run(capsys, "trust", "add", "--role", "intake", "--name", "intake",
                               "--key", intake_key)
    assert "version 2" in _run(capsys, "trust", "add", "--role", "evaluator", "--name", "gpu1",
                               "--key-file", str(tmp_path / "gpu1.json"))
    shown = json.loads(_run(capsys, "trust", "show", "--json"))
    assert shown == {"root": root, "version": 2, "keys": [
        {"key": evaluator_key, "role": "evaluator", "name": "gpu1"},
        {"key": intake_key, "role": "intake", "name": "intake"}]}
    assert "version 3" in _run(capsys, "trust", "remove", "--key", evaluator_key)
    current = read_trusted(kafka_settings, root)
    assert current.version == 3
    assert set(current.keys) == {intake_key}
    # Nothing to remove: a one-line error, no new version.
    assert main(["trust", "remove", "--name", "gpu1"]) == 2
    assert "nothing to remove" in capsys.readouterr().err
    assert read_trusted(kafka_settings, root).version == 3


def test_a_set_not_signed_by_the_root_is_ignored(env: Path, tmp_path: Path,
                                                 kafka_settings: KafkaSettings,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = _init(capsys, monkeypatch)
    intake_key = _run(capsys, "trust", "keygen", "--out",
                      str(tmp_path / "intake.json")).removeprefix("key=")
    _run(capsys, "trust", "add", "--role", "intake", "--name", "intake", "--key", intake_key)
    forger = create_key_file(tmp_path / "forger.json")
    publish_trusted(kafka_settings, forger,
                    [TrustedKey(key=forger.hotkey, role="evaluator", name="gpu1")], version=99)
    current = read_trusted(kafka_settings, root)
    assert current.version == 1
    assert set(current.keys) == {intake_key}
    # The forged set is on the topic; the next version the operator publishes is 2.
    assert len(_records(kafka_settings, kafka_settings.topics.trust)) == 2
    assert "version 2" in _run(capsys, "trust", "remove", "--key", intake_key)


def test_scoring_activate_with_a_root_is_signed_so_readers_accept_it(
        env: Path, kafka_settings: KafkaSettings, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEECHSTREAM_TRUST_INSECURE", "false")
    root = _init(capsys, monkeypatch)
    assert "scoring version v2 activated" in _run(capsys, "scoring", "activate", "v2")
    records = _records(kafka_settings, kafka_settings.topics.scoring_active)
    assert len(records) == 1
    envelope, raw = records[0]
    assert isinstance(envelope.payload, ScoringActivated)
    assert envelope.signer == root
    spec = kafka_settings.topics.spec_of(kafka_settings.topics.scoring_active)
    trust = read_trusted(kafka_settings, root)
    assert refusal(envelope, raw, spec, trust, root) is None
    # ... and a service's store reads it as the one that counts.
    store = TrustStore(kafka_settings, root, name="test-trust-reader").start()
    try:
        assert store.verify(envelope, raw, kafka_settings.topics.scoring_active) is None
    finally:
        store.close()
    assert "activated (was v2)" in _run(capsys, "scoring", "activate", "v1")


def test_chain_tick_is_signed_by_the_chain_key(env: Path, tmp_path: Path,
                                                kafka_settings: KafkaSettings,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = _init(capsys, monkeypatch)
    assert main(["chain", "tick", "--block", "7"]) == 2  # a root, and no chain key
    assert "SPEECHSTREAM_CHAIN_KEY_FILE" in capsys.readouterr().err
    chain_file = tmp_path / "chain.json"
    chain_key = _run(capsys, "trust", "keygen", "--out", str(chain_file)).removeprefix("key=")
    _run(capsys, "trust", "add", "--role", "chain", "--name", "chain", "--key", chain_key)
    monkeypatch.setenv("SPEECHSTREAM_CHAIN_KEY_FILE", str(chain_file))
    assert f"signed by {chain_key}" in _run(capsys, "chain", "tick", "--block", "7")
    records = _records(kafka_settings, kafka_settings.topics.chain_blocks)
    assert len(records) == 1
    envelope, raw = records[0]
    assert isinstance(envelope.payload, ChainBlock) and envelope.payload.block == 7
    assert envelope.signer == chain_key
    store = TrustStore(kafka_settings, root, name="test-trust-reader").start()
    try:
        assert store.verify(envelope, raw, kafka_settings.topics.chain_blocks) is None
        # Once the key is removed, the same head is refused.
        _run(capsys, "trust", "remove", "--name", "chain")
        store.refresh()
        assert "does not trust" in (store.verify(envelope, raw,
                                                 kafka_settings.topics.chain_blocks) or "")
    finally:
        store.close()


def _request(hash_: str) -> Envelope:
    return new_envelope(EvaluationRequested(hash=hash_, hotkey="d" * 64, uid=1, block=10,
                                            repo_namespace="a", repo_name=f"m{hash_}",
                                            source_event_id=str(uuid.uuid4())),
                        key=hash_, producer="test")


def test_rescore_counts_only_trusted_requests_and_signs_its_rescores(
        env: Path, tmp_path: Path, kafka_settings: KafkaSettings,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEECHSTREAM_TRUST_INSECURE", "false")
    root = _init(capsys, monkeypatch)
    intake_file = tmp_path / "intake.json"
    _run(capsys, "trust", "keygen", "--out", str(intake_file))
    _run(capsys, "trust", "add", "--role", "intake", "--name", "intake", "--key-file",
         str(intake_file))
    forger = create_key_file(tmp_path / "forger.json")
    topic = kafka_settings.topics.evaluation_requests
    with EventProducer(kafka_settings, signer=Signer.from_key_file(intake_file)) as producer:
        producer.send(topic, _request("111"))
        producer.flush()
    with EventProducer(kafka_settings, signer=Signer(forger.private_key, forger.hotkey)) as p:
        p.send(topic, _request("222"))  # signed by a key the operator does not trust
        p.flush()
    with EventProducer(kafka_settings) as producer:
        producer.send(topic, _request("333"))  # unsigned
        producer.flush()
    status = json.loads(_run(capsys, "scoring", "status", "--json"))
    assert status["accepted"] == 1
    out = json.loads(_run(capsys, "rescore", "--scoring-version", "v2", "--all", "--json"))
    assert out["selected"] == 1 and out["queued"] == 1
    lane = kafka_settings.topics.rescores
    records = _records(kafka_settings, lane)
    assert [env.payload.hash for env, _ in records] == ["111"]
    envelope, raw = records[0]
    assert envelope.signer == root
    assert refusal(envelope, raw, kafka_settings.topics.spec_of(lane),
                   read_trusted(kafka_settings, root), root) is None


def test_reassign_uid_is_signed_by_the_operator_in_the_envelope_too(
        env: Path, kafka_settings: KafkaSettings, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = _init(capsys, monkeypatch)
    _run(capsys, "operator", "reassign-uid", "--uid", "3", "--hotkey", "e" * 64,
         "--block", "50")
    records = _records(kafka_settings, kafka_settings.topics.registrations)
    assert len(records) == 1
    envelope, raw = records[0]
    assert envelope.type == "uid.reassigned" and envelope.signer == root
    # Checked as the operator's (no topic rule): the envelope's signature verifies.
    assert refusal(envelope, raw, None, TrustSet(), root) is None
    assert "altered" in (refusal(envelope, raw.replace(b'"uid":3', b'"uid":4'), None,
                                 TrustSet(), root) or "")
