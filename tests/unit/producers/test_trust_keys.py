"""The operator's side of trust without a broker: the next trusted set (add, rotate, remove),
signed by the root; the operator's activation and re-scores pass the readers' check."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from producers import rescore
from producers import trust as trusted
from schemas.codec import encode
from schemas.envelope import new_envelope
from schemas.events import EvaluationRequested, KeysTrusted, TrustedKey
from schemas.signing import generate_key
from schemas.topics import TopicRegistry
from schemas.trust import TrustSet, refusal, root_refusal
from speechstream.exceptions import ConsumeError, TrustError
from speechstream.keys import Hotkey
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer

REGISTRY = TopicRegistry("")


def _key() -> Hotkey:
    private, public = generate_key()
    return Hotkey(private, public)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What add_key and remove_keys publish; the current set is version 2 below."""
    sent: list[dict[str, Any]] = []

    def publish(kafka: object, operator: Hotkey, keys: list[TrustedKey], *, version: int,
                reason: str | None = None) -> KeysTrusted:
        sent.append({"keys": {(k.key, k.role, k.name) for k in keys}, "version": version,
                     "reason": reason})
        return KeysTrusted(version=version, keys=keys, reason=reason)

    current = TrustSet(2, {"a" * 64: TrustedKey(key="a" * 64, role="sink", name="sink"),
                           "b" * 64: TrustedKey(key="b" * 64, role="evaluator", name="gpu-1")})
    monkeypatch.setattr(trusted, "read_trusted", lambda kafka, root, **_: current)
    monkeypatch.setattr(trusted, "publish_trusted", publish)
    return sent


def test_adding_a_second_key_under_a_name_keeps_the_first_then_removing_the_old_rotates(
        published: list[dict[str, Any]]) -> None:
    op = _key()
    trusted.add_key(None, op, key="c" * 64, role="evaluator", name="gpu-1")  # type: ignore[arg-type]
    assert published[-1]["version"] == 3
    assert published[-1]["keys"] == {("a" * 64, "sink", "sink"),
                                     ("b" * 64, "evaluator", "gpu-1"),
                                     ("c" * 64, "evaluator", "gpu-1")}
    trusted.remove_keys(None, op, key="b" * 64)  # type: ignore[arg-type]
    assert published[-1]["keys"] == {("a" * 64, "sink", "sink")}  # from the version-2 set
    assert published[-1]["reason"] == f"remove {'b' * 64}"


def test_adding_a_trusted_key_again_gives_it_the_new_role_and_name(
        published: list[dict[str, Any]]) -> None:
    trusted.add_key(None, _key(), key="a" * 64, role="api", name="api")  # type: ignore[arg-type]
    assert published[-1]["keys"] == {("a" * 64, "api", "api"),
                                     ("b" * 64, "evaluator", "gpu-1")}


def test_the_root_key_is_not_added_and_nothing_to_remove_is_an_error(
        published: list[dict[str, Any]]) -> None:
    op = _key()
    with pytest.raises(TrustError, match="root key is trusted already"):
        trusted.add_key(None, op, key=op.hotkey, role="sink", name="sink")  # type: ignore[arg-type]
    with pytest.raises(TrustError, match="nothing to remove"):
        trusted.remove_keys(None, op, name="nobody")  # type: ignore[arg-type]
    assert published == []
    trusted.remove_keys(None, op, name="gpu-1")  # type: ignore[arg-type]
    assert published[-1]["keys"] == {("a" * 64, "sink", "sink")}


def test_a_trusted_set_is_signed_by_the_root_and_only_the_root() -> None:
    op, other = _key(), _key()
    envelope = trusted.trusted_set(op, [TrustedKey(key="a" * 64, role="sink", name="sink")],
                                   version=1)
    raw = encode(envelope)
    assert root_refusal(envelope, raw, op.hotkey) is None
    assert root_refusal(envelope, raw, other.hotkey) == (
        "keys.trusted not signed by the operator's root key")
    doc = json.loads(raw)
    doc["payload"]["version"] = 9  # altered after signing
    assert "altered" in (root_refusal(envelope, json.dumps(doc).encode(), op.hotkey) or "")


def test_the_operators_activation_and_rescores_pass_the_check_only_when_signed_by_the_root(
        ) -> None:
    op, intruder = _key(), _key()
    trust = TrustSet(1, {intruder.hotkey: TrustedKey(key=intruder.hotkey, role="evaluator",
                                                     name="gpu-1")})
    active = REGISTRY.spec_of(REGISTRY.scoring_active)
    signed = Signer(op.private_key, op.hotkey).sign(rescore.activation("v2", "test"))
    assert refusal(signed, encode(signed), active, trust, op.hotkey) is None
    unsigned = rescore.activation("v2")
    assert "unsigned scoring.activated" in (
        refusal(unsigned, encode(unsigned), active, trust, op.hotkey) or "")
    forged = Signer(intruder.private_key, intruder.hotkey).sign(rescore.activation("v2"))
    assert "only operator may say it" in (
        refusal(forged, encode(forged), active, trust, op.hotkey) or "")

    request = new_envelope(EvaluationRequested(hash="123", hotkey="d" * 64, uid=1, block=10,
                                               repo_namespace="a", repo_name="b",
                                               source_event_id=str(uuid.uuid4())),
                           key="123", producer="intake")
    again = Signer(op.private_key, op.hotkey).sign(rescore.rescore_envelope(request, "v2"))
    lane = REGISTRY.spec_of(REGISTRY.rescores)
    assert refusal(again, encode(again), lane, trust, op.hotkey) is None


def test_a_trusted_set_that_cannot_be_read_to_its_end_is_an_error_not_version_0(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Publishing "the next version" after a failed read would publish one readers ignore.
    def read_log(*args: Any, **kwargs: Any) -> None:
        raise ConsumeError("speechstream-trust: could not read t.trust to its end within 30s")

    monkeypatch.setattr(trusted, "read_log", read_log)
    with pytest.raises(TrustError, match="cannot read the trusted keys: speechstream-trust"):
        trusted.read_trusted(KafkaSettings(), "a" * 64)


def test_service_keys_are_kept_across_calls_unless_fresh(tmp_path: Any) -> None:
    names = {"intake": "intake", "evaluator": "e1-cpu"}
    first = trusted.service_keys(tmp_path, names, fresh=False)
    assert [(k.role, k.name) for k in first.entries] == [("intake", "intake"),
                                                         ("evaluator", "e1-cpu")]
    assert oct(first.key_file("intake").stat().st_mode & 0o777) == "0o600"
    assert first.environment() == {
        "SPEECHSTREAM_TRUST_OPERATOR_KEY": first.operator.hotkey,
        "SPEECHSTREAM_STREAMS_KEY_FILE": str(tmp_path / "intake.json"),
        "SPEECHSTREAM_EVALUATOR_KEY_FILE": str(tmp_path / "evaluator.json")}
    again = trusted.service_keys(tmp_path, names, fresh=False)
    assert again.operator.hotkey == first.operator.hotkey and again.entries == first.entries
    fresh = trusted.service_keys(tmp_path, names, fresh=True)
    assert fresh.operator.hotkey != first.operator.hotkey
    assert {k.key for k in fresh.entries}.isdisjoint(k.key for k in first.entries)
    with pytest.raises(ValueError, match="miner"):
        trusted.service_keys(tmp_path, {"miner": "m"}, fresh=True)
