"""`speechstream trust` and the operator's and chain adapter's signing keys on the command line:
arguments, errors, key files, and what `show` prints (no broker: the reads and writes are
replaced)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from cli.commands import chain, scoring, trust
from cli.commands.operator import operator_signer
from cli.exceptions import UsageError
from cli.main import main
from producers.settings import ChainSettings
from schemas.events import KeysTrusted, TrustedKey
from schemas.trust import TrustSet
from speechstream import trust as trust_module
from speechstream.keys import create_key_file, load_key_file
from speechstream.settings import TrustSettings
from speechstream.trust import TrustStore

KEY_A = "a" * 64
KEY_B = "b" * 64


@pytest.fixture
def operator_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the operator's key file is (not created); no root of trust configured."""
    path = tmp_path / "keys" / "operator.json"
    monkeypatch.setenv("SPEECHSTREAM_OPERATOR_KEY_FILE", str(path))
    monkeypatch.delenv("SPEECHSTREAM_API_OPERATOR_KEY_FILE", raising=False)
    monkeypatch.delenv("SPEECHSTREAM_TRUST_OPERATOR_KEY", raising=False)
    return path


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_keygen_writes_a_0600_key_file_and_prints_its_public_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "svc" / "sink.json"
    assert main(["trust", "keygen", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert printed == f"key={load_key_file(out).hotkey}"
    # An existing file is kept unless --force.
    assert main(["trust", "keygen", "--out", str(out)]) == 2
    assert "already exists" in _error(capsys)
    assert main(["trust", "keygen", "--out", str(out), "--force"]) == 0
    assert capsys.readouterr().out.strip() == f"key={load_key_file(out).hotkey}"
    assert printed != f"key={load_key_file(out).hotkey}"


def test_init_creates_the_operator_key_once_and_prints_the_root_for_eval(
        operator_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trust", "init"]) == 0
    first = capsys.readouterr().out.strip()
    root = load_key_file(operator_file).hotkey
    assert first == f"SPEECHSTREAM_TRUST_OPERATOR_KEY={root}"
    assert stat.S_IMODE(operator_file.stat().st_mode) == 0o600
    assert main(["trust", "init"]) == 0
    assert capsys.readouterr().out.strip() == first  # the same key: not replaced


def test_add_refuses_an_unknown_role_a_bad_key_and_no_operator_key(
        operator_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trust", "add", "--role", "miner", "--name", "m", "--key", KEY_A]) == 2
    assert "unknown role 'miner'" in _error(capsys)
    assert main(["trust", "add", "--role", "sink", "--name", "sink", "--key", "ABC"]) == 2
    assert "64 lowercase hex" in _error(capsys)
    assert main(["trust", "add", "--role", "sink", "--name", "sink", "--key", KEY_A]) == 2
    err = _error(capsys)
    assert "no operator key file" in err and "speechstream trust init" in err
    with pytest.raises(SystemExit):  # --key and --key-file are one or the other
        main(["trust", "add", "--role", "sink", "--name", "sink", "--key", KEY_A,
              "--key-file", "x"])


def test_add_refuses_an_operator_key_that_is_not_the_configured_root(
        operator_file: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    create_key_file(operator_file)
    monkeypatch.setenv("SPEECHSTREAM_TRUST_OPERATOR_KEY", KEY_B)
    assert main(["trust", "add", "--role", "sink", "--name", "sink", "--key", KEY_A]) == 2
    assert f"not the root of trust SPEECHSTREAM_TRUST_OPERATOR_KEY={KEY_B}" in _error(capsys)


def test_add_publishes_the_key_of_a_key_file_signed_by_the_operator(
        operator_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    operator = create_key_file(operator_file)
    service = create_key_file(tmp_path / "ev.json")
    calls: list[dict[str, Any]] = []

    def add_key(kafka: object, op: object, **kw: Any) -> KeysTrusted:
        calls.append({"operator": op, **kw})
        return KeysTrusted(version=4, keys=[TrustedKey(key=kw["key"], role=kw["role"],
                                                       name=kw["name"])])

    monkeypatch.setattr(trust.trusted, "add_key", add_key)
    assert main(["trust", "add", "--role", "evaluator", "--name", "gpu-1", "--key-file",
                 str(tmp_path / "ev.json")]) == 0
    assert calls == [{"operator": operator, "key": service.hotkey, "role": "evaluator",
                      "name": "gpu-1", "reason": None}]
    assert capsys.readouterr().out.startswith("trusted keys version 4: added evaluator 'gpu-1'")


def test_remove_with_nothing_to_remove_is_a_one_line_error(
        operator_file: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    create_key_file(operator_file)
    real = trust.trusted.remove_keys

    def remove_keys(kafka: object, op: Any, **kw: Any) -> KeysTrusted:
        monkeypatch.setattr(trust.trusted, "read_trusted", lambda *a, **k: TrustSet(2, {}))
        return real(kafka, op, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(trust.trusted, "remove_keys", remove_keys)
    assert main(["trust", "remove", "--name", "ghost"]) == 2
    assert "version 2 of the trusted keys has no key ghost: nothing to remove" in _error(capsys)
    with pytest.raises(SystemExit):
        main(["trust", "remove"])  # --key or --name is required


def test_show_prints_the_version_and_each_key_with_role_and_name(
        operator_file: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SPEECHSTREAM_TRUST_OPERATOR_KEY", KEY_B)
    keys = {KEY_A: TrustedKey(key=KEY_A, role="sink", name="sink"),
            "c" * 64: TrustedKey(key="c" * 64, role="evaluator", name="gpu-1")}
    roots: list[str] = []

    def read_trusted(kafka: object, root: str, **_: Any) -> TrustSet:
        roots.append(root)
        return TrustSet(3, keys)

    monkeypatch.setattr(trust.trusted, "read_trusted", read_trusted)
    assert main(["trust", "show"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"trusted keys version 3 (root {KEY_B}): 2 keys",
                     f"  evaluator gpu-1  {'c' * 64}",
                     f"  sink      sink   {KEY_A}"]
    assert roots == [KEY_B]
    assert main(["trust", "show", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"root": KEY_B, "version": 3, "keys": [
        {"key": "c" * 64, "role": "evaluator", "name": "gpu-1"},
        {"key": KEY_A, "role": "sink", "name": "sink"}]}


def test_show_without_any_root_says_how_to_make_one(
        operator_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trust", "show"]) == 2
    assert "no root of trust" in _error(capsys)


def test_show_of_an_empty_set() -> None:
    assert trust.format_set(TrustSet(), KEY_A) == f"trusted keys version 0 (root {KEY_A}): 0 keys"


def test_the_operator_signer_is_the_root_key_where_a_root_is_configured(
        operator_file: Path) -> None:
    assert operator_signer(trust=TrustSettings(operator_key=None)) is None  # no file, no root
    with pytest.raises(UsageError, match="trust init"):
        operator_signer(trust=TrustSettings(operator_key=KEY_A))  # a root needs the file
    key = create_key_file(operator_file)
    with pytest.raises(UsageError, match="not the root of trust"):
        operator_signer(trust=TrustSettings(operator_key=KEY_A))
    signer = operator_signer(trust=TrustSettings(operator_key=key.hotkey))
    assert signer is not None and signer.public_key == key.hotkey
    assert operator_signer(trust=TrustSettings()) is not None  # the file, when it exists


def test_chain_tick_needs_its_key_where_a_root_is_configured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SPEECHSTREAM_CHAIN_KEY_FILE", raising=False)
    monkeypatch.setenv("SPEECHSTREAM_TRUST_OPERATOR_KEY", KEY_A)
    assert main(["chain", "tick", "--block", "5"]) == 2
    assert "set SPEECHSTREAM_CHAIN_KEY_FILE" in _error(capsys)
    assert chain.chain_signer(ChainSettings(), TrustSettings(operator_key=None)) is None
    with pytest.raises(UsageError, match="not found"):
        chain.chain_signer(ChainSettings(key_file=tmp_path / "none.json"), TrustSettings())
    key = create_key_file(tmp_path / "chain.json")
    monkeypatch.setenv("SPEECHSTREAM_CHAIN_KEY_FILE", str(tmp_path / "chain.json"))
    signer = chain.chain_signer(ChainSettings(), TrustSettings())
    assert signer is not None and signer.public_key == key.hotkey


def test_scoring_activate_reads_through_the_check_and_signs_with_the_root(
        operator_file: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    key = create_key_file(operator_file)
    monkeypatch.setenv("SPEECHSTREAM_TRUST_OPERATOR_KEY", key.hotkey)
    store = TrustStore.fixed(key.hotkey)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(trust_module, "trust_store", lambda *a, **k: store)

    def coverage(kafka: object, verify: Any = None) -> tuple[str, int, dict[str, Any]]:
        seen["verify"] = verify
        return "v1", 1, {"v2": {"COMPLETED": 1, "FAILED": 0}}

    def activate(kafka: object, version: str, reason: Any = None, *, signer: Any = None) -> None:
        seen.update(version=version, signer=signer)

    monkeypatch.setattr(scoring.rescore, "coverage", coverage)
    monkeypatch.setattr(scoring.rescore, "activate", activate)
    assert main(["scoring", "activate", "v2"]) == 0
    assert seen["verify"] == store.verify
    assert seen["version"] == "v2" and seen["signer"].public_key == key.hotkey
    assert "scoring version v2 activated" in capsys.readouterr().out
