"""The command line: every command module registers, and `schemas export` writes valid schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from cli.main import COMMAND_MODULES, build_parser, main
from schemas.codec import encode
from schemas.envelope import Envelope, new_envelope
from schemas.events import EVENT_TYPES, EvaluationStatusChanged

pytestmark = pytest.mark.filterwarnings("error")


def test_every_command_module_registers() -> None:
    parser = build_parser()
    for argv in (["dev", "up"], ["dev", "down"], ["dev", "status"], ["topics", "create"],
                 ["schemas", "export"]):
        args = parser.parse_args(argv)
        assert callable(args.func)
    assert "cli.commands.dev" in COMMAND_MODULES


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["dev", "up", "--help"])
    assert exc.value.code == 0
    assert "KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().out


def test_schemas_export_writes_one_file_per_event_and_the_envelope(tmp_path: Path) -> None:
    assert main(["schemas", "export", "--out", str(tmp_path)]) == 0
    names = {p.name for p in tmp_path.glob("*.json")}
    assert names == {"envelope.json"} | {f"{t}.json" for t in EVENT_TYPES}


def test_an_encoded_record_validates_against_the_exported_schema(tmp_path: Path) -> None:
    main(["schemas", "export", "--out", str(tmp_path)])
    schema = json.loads((tmp_path / "envelope.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    fields = EvaluationStatusChanged.model_fields
    payload_schema = json.loads((tmp_path / "evaluation.status.json").read_text())
    assert set(payload_schema["properties"]) == set(fields)
    example = _status_event()
    record = json.loads(encode(example))
    jsonschema.validate(record, schema)
    jsonschema.validate(record["payload"], payload_schema)
    record["schema_version"] = 99
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(record, schema)


def _status_event() -> Envelope:
    payload = EvaluationStatusChanged(hash="12345", status="QUEUED")
    return new_envelope(payload, key=payload.hash, producer="test")


def _reassign(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(["operator", "reassign-uid", *argv])
    return status, capsys.readouterr().err


def test_operator_reassign_uid_refuses_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "operator.json"
    assert main(["operator", "keygen", "--key-file", str(key_file)]) == 0
    assert capsys.readouterr().out.startswith("operator_key=")
    good = "b" * 64
    status, err = _reassign(capsys, "--uid", "1", "--hotkey", "B" * 64, "--key-file",
                            str(key_file))
    assert status == 2 and "--hotkey must be 64 lowercase hex characters" in err
    status, err = _reassign(capsys, "--uid", "-1", "--hotkey", good, "--key-file",
                            str(key_file))
    assert status == 2 and "--uid must be ≥ 0" in err
    status, err = _reassign(capsys, "--uid", "1", "--hotkey", good, "--block", "-5",
                            "--key-file", str(key_file))
    assert status == 2 and "--block must be ≥ 0" in err
    missing = tmp_path / "nowhere.json"
    status, err = _reassign(capsys, "--uid", "1", "--hotkey", good, "--key-file", str(missing))
    assert status == 2 and "not found; run `speechstream operator keygen`" in err
    key_file.chmod(0o644)
    status, err = _reassign(capsys, "--uid", "1", "--hotkey", good, "--key-file", str(key_file))
    assert status == 2 and "readable by others; run `chmod 600" in err


def test_operator_key_file_defaults_to_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "from-env.json"
    monkeypatch.setenv("SPEECHSTREAM_API_OPERATOR_KEY_FILE", str(key_file))
    assert main(["operator", "keygen"]) == 0
    assert f"key_file={key_file}" in capsys.readouterr().out
    monkeypatch.setenv("SPEECHSTREAM_OPERATOR_KEY_FILE", str(tmp_path / "own.json"))
    status, err = _reassign(capsys, "--uid", "1", "--hotkey", "b" * 64)
    assert status == 2 and "own.json not found" in err


def test_operator_reassign_uid_requires_uid_and_hotkey(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["operator", "reassign-uid", "--uid", "1"])
    assert exc.value.code == 2
    assert "--hotkey" in capsys.readouterr().err


def test_acl_plan_prints_the_registry_acls_of_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("SPEECHSTREAM_TOPIC_PREFIX", "t1.")
    monkeypatch.setenv("SPEECHSTREAM_EVALUATOR_GROUP_ID", "evals")
    monkeypatch.delenv("SPEECHSTREAM_ACL_PRINCIPALS_FILE", raising=False)
    assert main(["acl", "plan", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    miner = {(r["name"], r["operation"]) for r in rows if r["principal"] == "User:miner"}
    assert ("t1.submissions", "WRITE") in miner
    assert ("t1.scores", "WRITE") not in miner
    assert {r["name"] for r in rows if r["resource"] == "transactional_id"} == {"evals."}
    assert ("t1.speechstream-intake", "READ") in {
        (r["name"], r["operation"]) for r in rows if r["resource"] == "group"}

    principals = tmp_path / "principals.json"
    principals.write_text(json.dumps({"evaluator": [{"principal": "User:e1", "id": "h1"}]}))
    monkeypatch.setenv("SPEECHSTREAM_ACL_PRINCIPALS_FILE", str(principals))
    assert main(["acl", "plan"]) == 0
    out = capsys.readouterr().out
    assert "evals.h1-" in out and "User:miner" not in out
    principals.write_text(json.dumps({"wizard": ["User:x"]}))
    assert main(["acl", "plan"]) == 2
    assert "unknown role" in capsys.readouterr().err
