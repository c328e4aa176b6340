"""Compare the sink's tables in two schemas: row count and a checksum per table.

The checksum covers the columns the sink writes from events (``Table.columns`` in
``sinks.tables``), row by row in key order. The columns the database fills at write time
(``written_at``, ``created_at``, ``updated_at``: ``clock_timestamp()``) are left out: they
differ between any two builds of the same events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from sinks.tables import TABLES, Table


@dataclass(frozen=True)
class TableComparison:
    """One table in the live schema and in the rebuilt one."""

    table: str
    live_rows: int
    rebuilt_rows: int
    live_checksum: str
    rebuilt_checksum: str

    @property
    def equal(self) -> bool:
        """Same rows (as far as count and checksum tell)."""
        return (self.live_rows, self.live_checksum) == (self.rebuilt_rows, self.rebuilt_checksum)

    def as_dict(self) -> dict[str, Any]:
        """The comparison as JSON-ready values, ``equal`` included."""
        return {**asdict(self), "equal": self.equal}


def checksum_query(table: Table, schema: str) -> sql.Composed:
    """``SELECT count(*), md5(…)`` of ``schema.table``: the md5 of its described columns, one
    row per line in key order (an empty table: the md5 of the empty string)."""
    row = sql.SQL("row({})::text").format(
        sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns))
    key = sql.SQL(", ").join(map(sql.Identifier, table.key))
    return sql.SQL(
        "SELECT count(*), md5(coalesce(string_agg({row}, E'\\n' ORDER BY {key}), '')) FROM {t}"
    ).format(row=row, key=key, t=sql.Identifier(schema, table.name))


def compare(
    conn: psycopg.Connection, live: str, rebuilt: str, tables: tuple[Table, ...] = TABLES
) -> list[TableComparison]:
    """Each of ``tables`` in schema ``live`` against the same table in schema ``rebuilt``."""
    found = []
    for table in tables:
        live_rows, live_sum = _one(conn, checksum_query(table, live))
        rebuilt_rows, rebuilt_sum = _one(conn, checksum_query(table, rebuilt))
        found.append(TableComparison(table.name, live_rows, rebuilt_rows, live_sum, rebuilt_sum))
    return found


def _one(conn: psycopg.Connection, query: sql.Composed) -> tuple[int, str]:
    row = conn.execute(query).fetchone()
    assert row is not None  # an aggregate always returns a row
    return int(row[0]), str(row[1])


def format_table(comparisons: list[TableComparison]) -> list[str]:
    """One aligned line per table: ``table  live_rows  rebuilt_rows  equal|DIFFERS``, under a
    header line."""
    rows = [("table", "live_rows", "rebuilt_rows", "result")]
    rows += [(c.table, str(c.live_rows), str(c.rebuilt_rows), "equal" if c.equal else "DIFFERS")
             for c in comparisons]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return [
        "  ".join((r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]), r[3]))
        for r in rows
    ]
