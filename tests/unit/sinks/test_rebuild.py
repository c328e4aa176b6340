"""The rebuild's pure parts: the schema's name and connection string, the checksum query, the
comparison's lines, and the command's argument checks."""

from __future__ import annotations

import re

import pytest
from psycopg.conninfo import conninfo_to_dict

from cli.main import main
from sinks.compare import TableComparison, checksum_query, format_table
from sinks.exceptions import RebuildError
from sinks.rebuild import OWN_RELATIONS, new_schema_name, schema_conninfo
from sinks.tables import SCORES, TABLES, VIEWS


def test_a_rebuild_schema_is_named_rebuild_and_8_hex() -> None:
    assert re.fullmatch(r"rebuild_[0-9a-f]{8}", new_schema_name())
    assert new_schema_name("0badcafe") == "rebuild_0badcafe"
    assert new_schema_name() != new_schema_name()


@pytest.mark.parametrize("conninfo", [
    "postgresql://u:p@db:5433/speechstream",
    "host=db port=5433 dbname=speechstream user=u password=p",
])
def test_the_rebuild_connection_finds_its_tables_in_its_schema_alone(conninfo: str) -> None:
    params = conninfo_to_dict(schema_conninfo(conninfo, "rebuild_0badcafe"))
    assert params["options"] == "-c search_path=rebuild_0badcafe"
    assert (params["host"], params["port"], params["dbname"]) == ("db", "5433", "speechstream")


def test_options_already_in_the_url_are_kept() -> None:
    conninfo = "host=db dbname=x options='-c statement_timeout=5000'"
    params = conninfo_to_dict(schema_conninfo(conninfo, "rebuild_0badcafe"))
    assert params["options"] == "-c statement_timeout=5000 -c search_path=rebuild_0badcafe"


def test_a_bad_url_or_schema_name_is_refused() -> None:
    with pytest.raises(RebuildError, match="DATABASE_URL"):
        schema_conninfo("host=db dbname", "rebuild_0badcafe")
    with pytest.raises(ValueError):
        schema_conninfo("host=db", "rebuild; DROP")


def test_the_checksum_covers_the_described_columns_in_key_order() -> None:
    text = checksum_query(SCORES, "rebuild_0badcafe").as_string(None)
    assert 'FROM "rebuild_0badcafe"."scores"' in text
    assert 'ORDER BY "hash", "scoring_version"' in text
    assert '"total_score"' in text and '"manifest"' in text
    assert "written_at" not in text  # filled at write time: differs between builds


def test_every_table_view_and_the_ledger_belong_to_the_schema() -> None:
    assert OWN_RELATIONS == {t.name for t in TABLES} | set(VIEWS) | {"schema_migrations"}


def test_the_comparison_prints_one_aligned_line_per_table() -> None:
    same = TableComparison("miners", 3, 3, "a", "a")
    differs = TableComparison("scores", 10, 10, "a", "b")
    lines = format_table([same, differs])
    assert [line.split() for line in lines] == [
        ["table", "live_rows", "rebuilt_rows", "result"],
        ["miners", "3", "3", "equal"],
        ["scores", "10", "10", "DIFFERS"],
    ]
    assert lines[1].index("equal") == lines[2].index("DIFFERS") == lines[0].index("result")
    assert differs.as_dict()["equal"] is False and same.equal


def test_json_goes_with_verify(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sink", "rebuild", "--json"]) == 1
    assert "--json goes with --verify" in capsys.readouterr().err
