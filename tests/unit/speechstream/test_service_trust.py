"""How a service opens its trust: the root's store, its own signer, both checked at start, the
store closed however the service ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.events import KeysTrusted, TrustedKey
from sinks.settings import SinkSettings
from speechstream import trust as trust_module
from speechstream.exceptions import TrustError
from speechstream.keys import create_key_file
from speechstream.settings import KafkaSettings, TrustSettings
from speechstream.trust import TrustStore, checked_reads, service_trust


class Closing(TrustStore):
    closed = 0

    def close(self) -> None:
        Closing.closed += 1


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, Path]:
    """The operator's root key and a sink key file it trusts; ``trust_store`` hands out a
    fixed store of that set instead of reading a broker."""
    operator = create_key_file(tmp_path / "operator.json")
    sink = create_key_file(tmp_path / "sink.json")
    trusted = KeysTrusted(version=1, keys=[TrustedKey(key=sink.hotkey, role="sink", name="sink")])
    Closing.closed = 0
    monkeypatch.setattr(trust_module, "TrustStore",
                        lambda kafka, root, **kw: _Started(Closing.fixed(root, trusted)))
    return operator.hotkey, tmp_path / "sink.json"


class _Started:
    def __init__(self, store: TrustStore) -> None:
        self.store = store

    def start(self) -> TrustStore:
        return self.store


def test_insecure_gives_neither_store_nor_signer() -> None:
    with service_trust(KafkaSettings(), SinkSettings(), role="sink", name="sink",
                       trust=TrustSettings(insecure=True)) as trust:
        assert trust.store is None and trust.signer is None and trust.verify is None


def test_no_root_and_not_insecure_refuses_to_start() -> None:
    with pytest.raises(TrustError, match="SPEECHSTREAM_TRUST_OPERATOR_KEY"), \
            service_trust(KafkaSettings(), SinkSettings(), role="sink", name="sink",
                          trust=TrustSettings(insecure=False)):
        pass


def test_a_trusted_key_signs_and_the_store_checks_then_closes(root: tuple[str, Path]) -> None:
    key, key_file = root
    with service_trust(KafkaSettings(), SinkSettings(key_file=key_file), role="sink",
                       name="sink", trust=TrustSettings(operator_key=key)) as trust:
        assert trust.signer is not None and trust.store is not None
        assert trust.verify == trust.store.verify
        assert Closing.closed == 0
    assert Closing.closed == 1


def test_a_missing_key_file_names_the_services_setting_and_closes(
        root: tuple[str, Path]) -> None:
    key, _ = root
    with pytest.raises(TrustError, match="SPEECHSTREAM_SINK_KEY_FILE"), \
            service_trust(KafkaSettings(), SinkSettings(), role="sink", name="sink",
                          trust=TrustSettings(operator_key=key)):
        pass
    assert Closing.closed == 1


def test_a_key_trusted_for_another_role_is_refused(root: tuple[str, Path]) -> None:
    key, key_file = root
    with pytest.raises(TrustError, match="validator"), \
            service_trust(KafkaSettings(), SinkSettings(key_file=key_file), role="validator",
                          name="v1", trust=TrustSettings(operator_key=key)):
        pass
    assert Closing.closed == 1


def test_checked_reads_closes_after_the_read(root: tuple[str, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = root
    monkeypatch.setenv("SPEECHSTREAM_TRUST_OPERATOR_KEY", key)
    with checked_reads(KafkaSettings(), "a command") as store:
        assert store is not None and Closing.closed == 0
    assert Closing.closed == 1
