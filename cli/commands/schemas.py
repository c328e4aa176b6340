"""`speechstream schemas export`: JSON Schema files of the envelope and every event."""

from __future__ import annotations

import argparse
from pathlib import Path

from schemas.export import export_schemas

DEFAULT_OUT = Path("docs/schemas")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``schemas`` command group."""
    schemas = subparsers.add_parser("schemas", help="export the events' JSON Schemas")
    sub = schemas.add_subparsers(dest="schemas_command", required=True, metavar="{export}")
    export = sub.add_parser(
        "export", help="write envelope.json and one <event type>.json per event",
        description="Write the JSON Schema (draft 2020-12, from the pydantic models) of the "
        "envelope — a whole record as it sits on a topic — and of each event payload.",
    )
    export.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    export.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    for path in export_schemas(args.out):
        print(path)
    return 0
