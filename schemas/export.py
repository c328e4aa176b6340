"""JSON Schema files for the envelope and every event type (what ``schemas export`` writes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.envelope import SCHEMA_VERSION, Envelope
from schemas.events import EVENT_TYPES

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema: ``envelope.json`` (a whole record) and ``<event type>.json``.

    ``envelope.json`` validates a record exactly as it sits on a topic; each event file
    validates the ``payload`` of that type.
    """
    models: dict[str, type[BaseModel]] = {"envelope.json": Envelope}
    models.update({f"{event_type}.json": model for event_type, model in EVENT_TYPES.items()})
    out: dict[str, dict[str, Any]] = {}
    for filename, model in models.items():
        schema = model.model_json_schema()
        out[filename] = {
            "$schema": SCHEMA_DIALECT,
            "$id": f"urn:speechstream:v{SCHEMA_VERSION}:{filename.removesuffix('.json')}",
            **schema,
        }
    return out


def export_schemas(out_dir: Path) -> list[Path]:
    """Write every schema into ``out_dir`` (created if needed); return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, schema in json_schemas().items():
        path = out_dir / filename
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written
