"""SQL derived from the table descriptions (``sinks.tables``): staging tables, COPY, merges.

Every merge is idempotent and order-insensitive, so replaying a topic, or replaying every topic
into empty tables, yields the same rows:
- ``InsertNew``: ``INSERT … ON CONFLICT (key) DO NOTHING`` (within a batch, ``DISTINCT ON`` the
  key by the rule's order, when it has one and a key repeats);
- ``KeepLatest``: upsert where the stored ``by`` is lower than the new one;
- ``FillOnce``: upsert where the stored row's ``unless`` column is still NULL;
- ``Advance``: upsert where the stored rank is lower; rows at the lowest rank only insert.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from sinks.tables import (
    Advance,
    Feed,
    FillOnce,
    InsertNew,
    KeepLatest,
    Merge,
    Projection,
    Row,
    Table,
)

# Staged as bigint: binary COPY would wrap an out-of-range int4 silently; the merge's cast
# into the target's type fails instead, as text COPY would.
WIDENED = {"smallint": "bigint", "integer": "bigint"}
INT_RANGES = {"smallint": (-(2**15), 2**15), "integer": (-(2**31), 2**31)}


def stage_name(feed: Feed) -> str:
    """The temporary staging table of ``feed``."""
    return f"stage_{feed.name}"


def stage_types(feed: Feed) -> list[str]:
    """The staging columns' types: the target's, integers widened to bigint."""
    types = (feed.table.column(c).type for c in feed.columns)
    return [WIDENED.get(t, t) for t in types]


def create_stage(feed: Feed) -> sql.Composed:
    """``CREATE TEMP TABLE stage_<feed>`` (emptied at every commit)."""
    return sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
        sql.Identifier(stage_name(feed)),
        sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
            for c, t in zip(feed.columns, stage_types(feed), strict=True)
        ),
    )


def copy_to_stage(feed: Feed, *, binary: bool) -> sql.Composed:
    """``COPY stage_<feed> (…) FROM STDIN``, binary or text."""
    return _copy(stage_name(feed), feed.columns, binary)


def direct_columns(feed: Feed) -> tuple[str, ...]:
    """The target columns a straight COPY writes: the staged ones, then the constants."""
    return (*feed.columns, *feed.constants)


def copy_direct(feed: Feed) -> sql.Composed:
    """``COPY <table> (…) FROM STDIN (FORMAT BINARY)``: rows straight into the target."""
    return _copy(feed.table.name, direct_columns(feed), True)


def direct_types(feed: Feed) -> list[str]:
    """The target's types of :func:`direct_columns`."""
    return [feed.table.column(c).type for c in direct_columns(feed)]


def int_checks(feed: Feed) -> list[tuple[int, int, int]]:
    """``(row position, low, high)`` of every staged column the target holds as int2/int4."""
    checks = []
    for i, c in enumerate(feed.columns):
        kind = feed.table.column(c).type
        if kind in INT_RANGES:
            checks.append((i, *INT_RANGES[kind]))
    return checks


def _copy(table: str, columns: Sequence[str], binary: bool) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(" (FORMAT BINARY)" if binary else ""),
    )


def keys_unique(feed: Feed, rows: Sequence[Row]) -> bool:
    """Whether no key of ``feed.table`` repeats among ``rows``."""
    positions = [feed.position(k) for k in feed.table.key]
    if len(positions) == 1:
        (i,) = positions
        return len({row[i] for row in rows}) == len(rows)
    return len({tuple(row[i] for i in positions) for row in rows}) == len(rows)


Variant = tuple[bool, bool]
"""Which statements a batch needs: for an ``Advance`` merge (lowest-rank rows present, higher
rows present); otherwise (a key repeats and the rule orders, False)."""


def variant(feed: Feed, rows: Sequence[Row]) -> Variant:
    """The :data:`Variant` of merging ``rows`` of ``feed``."""
    rule = feed.merge
    if isinstance(rule, Advance):
        at = feed.position(rule.rank)
        ranks = {row[at] for row in rows}
        return rule.lowest in ranks, bool(ranks - {rule.lowest})
    return _order(rule) is not None and not keys_unique(feed, rows), False


def merges(feed: Feed, which: Variant) -> list[sql.Composed]:
    """The statements that merge ``stage_<feed>`` into the target (and into the projection's
    table after it) for a batch of :func:`variant` ``which``."""
    columns = [*feed.columns, *feed.constants]
    values = [sql.Identifier(c) for c in feed.columns]
    values += [sql.Literal(v) for v in feed.constants.values()]
    source = sql.Identifier(stage_name(feed))
    rule = feed.merge
    statements: list[sql.Composed]
    if isinstance(rule, Advance):
        statements = _advance(feed.table, columns, values, source, rule, *which)
    else:
        distinct, _ = which
        select = _select(feed.table, values, source, rule if distinct else None)
        statements = [_insert(feed.table, columns, select,
                              _on_conflict(feed.table, feed.columns, rule))]
    if feed.then is not None:
        statements.append(_projection(feed, feed.then))
    return statements


def _order(rule: Merge) -> sql.Composable | None:
    """The in-batch ``ORDER BY`` tail that picks the row a key keeps (None: any row)."""
    if isinstance(rule, KeepLatest):
        return sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(c)) for c in rule.by)
    if isinstance(rule, InsertNew | FillOnce) and rule.order:
        return sql.SQL(", ").join(map(sql.Identifier, rule.order))
    return None


def _select(
    table: Table, values: list[sql.Composable], source: sql.Composable, distinct: Merge | None,
    where: sql.Composable | None = None,
) -> sql.Composed:
    key = sql.SQL(", ").join(map(sql.Identifier, table.key))
    parts: list[sql.Composable] = [sql.SQL("SELECT ")]
    if distinct is not None:
        parts.append(sql.SQL("DISTINCT ON ({}) ").format(key))
    parts.append(sql.SQL("{} FROM {}").format(sql.SQL(", ").join(values), source))
    if where is not None:
        parts.append(sql.SQL(" WHERE {}").format(where))
    if distinct is not None:
        parts.append(sql.SQL(" ORDER BY {}, {}").format(key, _order(distinct)))
    return sql.Composed(parts)


def _insert(
    table: Table, columns: Sequence[str], select: sql.Composable, conflict: sql.Composable
) -> sql.Composed:
    return sql.SQL("INSERT INTO {} ({}) {} ON CONFLICT ({}) {}").format(
        sql.Identifier(table.name),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        select,
        sql.SQL(", ").join(map(sql.Identifier, table.key)),
        conflict,
    )


def _on_conflict(table: Table, staged: Sequence[str], rule: Merge) -> sql.Composable:
    """What a conflicting row does under ``rule`` (every staged non-key column is set)."""
    if isinstance(rule, InsertNew):
        return sql.SQL("DO NOTHING")
    target = sql.Identifier(table.name)
    if isinstance(rule, KeepLatest):
        stored = sql.SQL(", ").join(sql.SQL("{}.{}").format(target, sql.Identifier(c))
                                    for c in rule.by)
        new = sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c))
                                 for c in rule.by)
        return _update(table, staged, (), None,
                       sql.SQL("({}) < ({})").format(stored, new))
    if isinstance(rule, FillOnce):
        return _update(table, staged, rule.keep, rule.touch,
                       sql.SQL("{}.{} IS NULL").format(target, sql.Identifier(rule.unless)))
    assert isinstance(rule, Advance)
    conditions = [sql.SQL("{t}.{r} < EXCLUDED.{r}").format(t=target, r=sql.Identifier(rule.rank))]
    conditions += [
        sql.SQL("({t}.{c} IS NULL OR {t}.{c} = EXCLUDED.{c})").format(t=target,
                                                                    c=sql.Identifier(c))
        for c in rule.same if c in staged
    ]
    return _update(table, staged, rule.keep, rule.touch, sql.SQL(" AND ").join(conditions))


def _update(
    table: Table, columns: Sequence[str], keep: Sequence[str], touch: str | None,
    where: sql.Composable,
) -> sql.Composed:
    target = sql.Identifier(table.name)
    sets: list[sql.Composable] = []
    for c in columns:
        if c in table.key:
            continue
        col = sql.Identifier(c)
        if c in keep:
            sets.append(sql.SQL("{c} = coalesce({t}.{c}, EXCLUDED.{c})").format(c=col, t=target))
        else:
            sets.append(sql.SQL("{c} = EXCLUDED.{c}").format(c=col))
    if touch is not None:
        sets.append(sql.SQL("{} = clock_timestamp()").format(sql.Identifier(touch)))
    return sql.SQL("DO UPDATE SET {} WHERE {}").format(sql.SQL(", ").join(sets), where)


def _advance(
    table: Table, columns: Sequence[str], values: list[sql.Composable], source: sql.Composable,
    rule: Advance, lowest_rows: bool, higher_rows: bool,
) -> list[sql.Composed]:
    """Rows at the lowest rank only create missing rows (their conflict would change nothing,
    and ``DO NOTHING`` locks nothing); higher ones move lower rows up."""
    rank, lowest = sql.Identifier(rule.rank), sql.Literal(rule.lowest)
    statements = []
    if lowest_rows:
        where = sql.SQL("{} = {}").format(rank, lowest)
        statements.append(_insert(table, columns, _select(table, values, source, None, where),
                                  sql.SQL("DO NOTHING")))
    if higher_rows:
        where = sql.SQL("{} > {}").format(rank, lowest)
        statements.append(_insert(table, columns, _select(table, values, source, None, where),
                                  _on_conflict(table, columns, rule)))
    return statements


def _projection(feed: Feed, then: Projection) -> sql.Composed:
    """The feed table's rows for the staged keys, written into ``then.table``: one row per
    target key (two scoring versions' scores of one hash must not both propose its
    submission's row), the one whose ``same`` columns match the target's row first, then by
    the feed's key."""
    columns = [*then.columns, *then.constants]
    values: list[sql.Composable] = [sql.Identifier(c) for c in then.columns.values()]
    values += [sql.Literal(v) for v in then.constants.values()]
    key = sql.SQL(", ").join(map(sql.Identifier, feed.table.key))
    source = sql.SQL("{} WHERE ({}) IN (SELECT {} FROM {})").format(
        sql.Identifier(feed.table.name), key, key, sql.Identifier(stage_name(feed))
    )
    if then.unless is not None:
        source = sql.SQL("{} AND {} IS NULL").format(source, sql.Identifier(then.unless))
    src, target = sql.Identifier(feed.table.name), sql.Identifier(then.table.name)
    target_key = sql.SQL(", ").join(
        sql.SQL("{}.{}").format(src, sql.Identifier(then.columns[c])) for c in then.table.key)
    order: list[sql.Composable] = [target_key]
    same = then.merge.same if isinstance(then.merge, Advance) else ()
    if same:
        matches = sql.SQL(" AND ").join(
            sql.SQL("t.{} = {}.{}").format(sql.Identifier(c), src,
                                           sql.Identifier(then.columns[c]))
            for c in (*then.table.key, *same))
        order.append(sql.SQL("EXISTS (SELECT 1 FROM {} t WHERE {}) DESC").format(target,
                                                                                matches))
    order += [sql.SQL("{}.{}").format(src, sql.Identifier(c)) for c in feed.table.key]
    select = sql.SQL("SELECT DISTINCT ON ({}) {} FROM {} ORDER BY {}").format(
        target_key, sql.SQL(", ").join(values), source, sql.SQL(", ").join(order))
    return _insert(then.table, columns, select, _on_conflict(then.table, columns, then.merge))
