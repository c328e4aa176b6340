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
