"""Rebuild the sink's tables from the log into a fresh schema, then swap it in (or compare it).

``speechstream sink rebuild`` (``cli/commands/sink.py``) drives :class:`Rebuild`:

1. ``CREATE SCHEMA rebuild_<8 hex>`` and apply the migrations there. Every statement of the
   migrations, the ledger and the sink names its tables unqualified, so a connection whose
   ``search_path`` is that schema alone (:func:`schema_conninfo`) creates, checks
   (``to_regclass``) and writes the tables there; the staging tables stay temporary.
2. Replay every topic from offset 0 with a fresh consumer group, ``<sink group>-rebuild-<hex>``,
   until every partition is drained. The live sink goes on writing the live schema meanwhile.
3. The swap, in one transaction on the live schema: lock the live tables ``EXCLUSIVE`` (the
   live sink's next batch waits; readers do not), catch the rebuild's group up once more to the
   end of every partition, then rename the live schema away, rename the rebuilt one to the live
   name, copy the live schema's and tables' grants, and drop the old tables and schema
   (``RESTRICT``: an object of someone else's in the live schema, or a view on a live table,
   fails the swap instead of being dropped with it). A lock not granted within
   ``lock_timeout_s``, or a deadlock, rolls the swap back; it is tried again.

Why nothing is lost or changed by the swap. Every event the live sink wrote into the old schema
was on its topic before the locks were granted, so the last catch-up, which starts after them,
reads it into the rebuilt schema. After the commit the live sink writes its waiting batch, from
its committed offsets on, into the new tables: events the rebuild has written already are
written a second time, after their first write. The merges (``sinks.statements``) are
idempotent, so a second write of an event changes nothing; and because every event reached the
new tables first through the rebuild, in partition order up to the end of each partition, and
only then again through the live sink, the *first* write of any two events of one key is in log
order, as in a plain replay. That matters for the rules where the first write wins a tie:
``InsertNew`` (two different events of one key: the first written stays), ``FillOnce`` (the
first request fills the row) and ``Advance`` at equal rank (COMPLETED vs FAILED). ``KeepLatest``
and ``Advance`` between ranks are order-free anyway. (Catching up only *after* the swap would
break those ties: the live sink could write an event of a key into the new schema before the
rebuild wrote that key's earlier event.) Dropping the old tables in the swap invalidates every
plan cached against them (the live sink's auto-prepared merges, the API's queries): their next
execution plans again against the new tables. The write-time columns (``written_at``,
``created_at``, ``updated_at``) hold the rebuild's times.

A rebuild that fails or is stopped before the swap commits drops its schema and leaves the
live one untouched; one that is killed (SIGKILL) leaves its ``rebuild_*`` schema behind, which
the next rebuild names (see :func:`leftover_schemas`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg
from prometheus_client import CollectorRegistry
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from schemas.envelope import Envelope
from sinks.base import Prepared, SinkWriter
from sinks.compare import TableComparison, compare
from sinks.exceptions import RebuildError, RebuildInterrupted, SinkError
from sinks.metrics import SinkMetrics
from sinks.migrate import apply_migrations
from sinks.postgres import PostgresWriter
from sinks.runner import SinkService
from sinks.settings import SinkSettings
from sinks.tables import TABLES, VIEWS
from speechstream.kafka.records import Verify
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer

log = logging.getLogger(__name__)

PREFIX = "rebuild_"
LEDGER = "schema_migrations"
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# Relations a live schema may hold: the tables, the views over them and the ledger (their
# indexes, keys and TOAST tables go with them).
OWN_RELATIONS = frozenset({*(t.name for t in TABLES), *VIEWS, LEDGER})


def new_schema_name(token: str | None = None) -> str:
    """``rebuild_<8 hex>`` (``token``: the hex, else a random one)."""
    return PREFIX + (token or uuid.uuid4().hex[:8])


def schema_conninfo(conninfo: str, schema: str) -> str:
    """``conninfo`` (a URL or key=value) whose sessions resolve unqualified names in ``schema``
    alone: ``-c search_path=<schema>`` appended to its ``options``."""
    if not _NAME.fullmatch(schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise RebuildError(f"DATABASE_URL is not a valid connection string: {exc}") from exc
    options = " ".join(filter(None, (params.get("options"), f"-c search_path={schema}")))
    return make_conninfo(**{**{k: str(v) for k, v in params.items() if v is not None},
                            "options": options})


def live_schema(conn: psycopg.Connection) -> str:
    """The schema the live tables are in (where ``conn``'s ``search_path`` finds them)."""
    rows = conn.execute(
        "SELECT t, n.nspname FROM unnest(%s::text[]) AS t"
        " LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident(t))"
        " LEFT JOIN pg_namespace n ON n.oid = c.relnamespace", ([t.name for t in TABLES],),
    ).fetchall()
    missing = [t for t, schema in rows if schema is None]
    schemas = {schema for _, schema in rows if schema is not None}
    if missing:
        raise RebuildError(f"the live tables {', '.join(missing)} are missing: apply the "
                           "migrations (`speechstream sink run` or `speechstream dev up`)")
    if len(schemas) != 1:
        raise RebuildError(f"the live tables are spread over the schemas {sorted(schemas)}; "
                           "a rebuild swaps one schema")
    (schema,) = schemas
    return schema


def foreign_objects(conn: psycopg.Connection, schema: str) -> list[str]:
    """Relations and functions in ``schema`` that the migrations did not create (a swap would
    have to drop them with the old schema, so it refuses)."""
    rows = conn.execute(
        "SELECT 'relation ' || c.relname FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = %s"
        " AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND NOT c.relname = ANY(%s)"
        " UNION ALL SELECT 'function ' || p.proname FROM pg_proc p JOIN pg_namespace n"
        " ON n.oid = p.pronamespace WHERE n.nspname = %s ORDER BY 1",
        (schema, sorted(OWN_RELATIONS), schema),
    ).fetchall()
    return [r[0] for r in rows]


def leftover_schemas(conn: psycopg.Connection) -> list[str]:
    """``rebuild_*`` schemas in the database (a rebuild running now, or one that was killed)."""
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s) ORDER BY 1", (PREFIX,))
    return [r[0] for r in rows.fetchall()]


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild did: the schema it built, events written, and the swap or comparison."""

    schema: str
    """The schema the rebuild wrote (renamed to ``live`` after a swap, dropped otherwise)."""
    live: str
    events: int
    """Events written into it (the last catch-up's included)."""
    seconds: float
    swapped: bool
    comparisons: list[TableComparison] | None = None

    @property
    def rate(self) -> float:
        """Events written per second of the whole rebuild."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


class _Counting(SinkWriter):
    """A sink that reports each batch's size after writing it."""

    def __init__(self, inner: SinkWriter, on_written: Callable[[int], None]) -> None:
        self._inner = inner
        self._on_written = on_written

    def start(self) -> None:
        self._inner.start()

    def write_batch(self, envelopes: Sequence[Envelope],
                    offsets: Sequence[int] | None = None) -> dict[str, int]:
        return self.write_prepared(self.prepare(envelopes, offsets))

    def prepare(self, envelopes: Sequence[Envelope],
                offsets: Sequence[int] | None = None) -> Prepared:
        return self._inner.prepare(envelopes, offsets)

    def write_prepared(self, prepared: Prepared) -> dict[str, int]:
        rows = self._inner.write_prepared(prepared)
        self._on_written(len(prepared.envelopes))
        return rows

    def close(self) -> None:
        self._inner.close()


class Rebuild:
    """One rebuild: into a fresh schema, then :meth:`swap` or :meth:`verify` (both drop the
    schema again when they fail or are stopped).

    ``stop`` ends a replay early (:class:`RebuildInterrupted`); ``on_written`` hears the size of
    every batch written, ``on_phase`` a line at every step.
    """

    def __init__(
        self,
        conninfo: str,
        kafka: KafkaSettings,
        settings: SinkSettings,
        *,
        stop: threading.Event,
        on_written: Callable[[int], None] = lambda _: None,
        on_phase: Callable[[str], None] = lambda _: None,
        lock_timeout_s: float = 10.0,
        swap_attempts: int = 3,
        verify: Verify | None = None,
        signer: Signer | None = None,
    ) -> None:
        token = uuid.uuid4().hex[:8]
        self.schema = new_schema_name(token)
        self.group = f"{settings.group_id}-rebuild-{token}"
        self._conninfo = conninfo
        self._kafka = kafka
        self._settings = settings.model_copy(update={"group_id": self.group})
        self._stop = stop
        self._on_written = on_written
        self._on_phase = on_phase
        self._lock_timeout_s = lock_timeout_s
        self._swap_attempts = swap_attempts
        self._verify = verify
        self._signer = signer
        self._events = 0

    def swap(self) -> RebuildResult:
        """Rebuild, then swap the rebuilt schema in for the live one."""
        return self._run(verify=False)

    def verify(self) -> RebuildResult:
        """Rebuild, compare each table with the live one, drop the rebuilt schema."""
        return self._run(verify=True)

    def _run(self, *, verify: bool) -> RebuildResult:
        started = time.monotonic()
        live = self._prepare()
        swapped = False
        try:
            self._replay()
            if verify:
                self._on_phase("comparing with the live tables")
                with self._connect() as conn:
                    comparisons = compare(conn, live, self.schema)
                return RebuildResult(self.schema, live, self._events,
                                     time.monotonic() - started, False, comparisons)
            self._swap(live)
            swapped = True
            return RebuildResult(self.schema, live, self._events, time.monotonic() - started,
                                 True)
        finally:
            if not swapped:
                self._drop()

    def _connect(self, conninfo: str | None = None) -> psycopg.Connection:
        try:
            return psycopg.connect(conninfo or self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise RebuildError(f"cannot connect to PostgreSQL (DATABASE_URL): {exc}") from exc

    def _prepare(self) -> str:
        """Migrate the live schema, find it, create and migrate the rebuild's; the live name."""
        schema_conninfo(self._conninfo, self.schema)  # a bad DATABASE_URL fails here
        with self._connect() as conn:
            apply_migrations(self._conninfo)
            live = live_schema(conn)
            if found := foreign_objects(conn, live):
                raise RebuildError(
                    f"the live schema {live} holds objects the migrations did not create "
                    f"({', '.join(found)}); a swap would drop them: move them to another schema")
            if others := leftover_schemas(conn):
                log.warning("schemas of other rebuilds (running, or killed): %s; drop a killed "
                            "one with DROP SCHEMA … CASCADE", ", ".join(others))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
        try:
            apply_migrations(schema_conninfo(self._conninfo, self.schema))
        except BaseException:
            self._drop()
            raise
        return live

    def _replay(self) -> None:
        self._on_phase(f"replaying every topic into schema {self.schema} "
                       f"(consumer group {self.group})")
        self._catch_up()

    def _catch_up(self) -> int:
        """Run the sink in the rebuild's group into the rebuild's schema until drained."""
        def written(n: int) -> None:
            self._events += n
            self._on_written(n)

        writer = _Counting(PostgresWriter(
            schema_conninfo(self._conninfo, self.schema),
            audio_keep_per_uid=self._settings.audio_keep_per_uid), written)
        service = SinkService(self._kafka, self._settings, writer,
                              metrics=SinkMetrics.create(CollectorRegistry()),
                              until_caught_up=True, verify=self._verify,
                              signer=self._signer)
        try:
            service.start()
            service.run(self._stop)
        finally:
            service.close()
        if self._stop.is_set():
            raise RebuildInterrupted(
                f"stopped after {self._events} events; schema {self.schema} dropped, the live "
                "tables are as they were")
        return service.written

    def _swap(self, live: str) -> None:
        for attempt in range(1, self._swap_attempts + 1):
            self._on_phase(f"locking the live tables in {live} against writes, catching up, "
                           "swapping")
            try:
                with self._connect() as conn, conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                        sql.Literal(f"{int(self._lock_timeout_s * 1000)}ms")))
                    conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
                        sql.SQL(", ").join(sql.Identifier(live, t.name) for t in TABLES)))
                    self._catch_up()
                    self._exchange(conn, live)
                return
            except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
                if attempt == self._swap_attempts:
                    raise RebuildError(
                        f"the swap could not lock the live tables in {attempt} tries ({exc}); "
                        "a long transaction holds them: end it, or raise the lock timeout"
                    ) from exc
                log.warning("swap try %d: %s; trying again", attempt, exc)
            except psycopg.Error as exc:
                raise RebuildError(f"the swap failed and was rolled back: {exc}") from exc

    def _exchange(self, conn: psycopg.Connection, live: str) -> None:
        """Inside the swap's transaction: grants, both renames, the old tables dropped."""
        old = f"{self.schema}_old"
        _copy_grants(conn, live, self.schema)
        rename = "ALTER SCHEMA {} RENAME TO {}"
        conn.execute(sql.SQL(rename).format(sql.Identifier(live), sql.Identifier(old)))
        conn.execute(sql.SQL(rename).format(sql.Identifier(self.schema), sql.Identifier(live)))
        conn.execute(sql.SQL("DROP VIEW {}").format(
            sql.SQL(", ").join(sql.Identifier(old, v) for v in VIEWS)))
        tables = sorted(OWN_RELATIONS - set(VIEWS))
        conn.execute(sql.SQL("DROP TABLE {}").format(
            sql.SQL(", ").join(sql.Identifier(old, t) for t in tables)))
        conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(old)))

    def _drop(self) -> None:
        """Drop the rebuild's schema (if it is there); never raises past a logged warning, so
        that the error that brought us here is the one reported."""
        try:
            with psycopg.connect(self._conninfo, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(self.schema)))
        except psycopg.Error as exc:
            log.warning("could not drop schema %s (%s): drop it by hand", self.schema, exc)


def _copy_grants(conn: psycopg.Connection, source: str, target: str) -> None:
    """Give ``target`` and its tables the privileges ``source`` and its tables grant."""
    grants = conn.execute(
        "SELECT NULL::text, a.grantee, a.privilege_type FROM pg_namespace n,"
        " aclexplode(n.nspacl) a WHERE n.nspname = %s"
        " UNION ALL SELECT c.relname, a.grantee, a.privilege_type FROM pg_namespace n"
        " JOIN pg_class c ON c.relnamespace = n.oid, aclexplode(c.relacl) a"
        " WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (source, source, sorted(OWN_RELATIONS)),
    ).fetchall()
    for table, grantee, privilege in grants:
        to = sql.SQL("PUBLIC") if grantee == 0 else sql.SQL("{}").format(
            sql.Identifier(_role_name(conn, grantee)))
        on = (sql.SQL("SCHEMA {}").format(sql.Identifier(target)) if table is None
              else sql.SQL("TABLE {}").format(sql.Identifier(target, table)))
        conn.execute(sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privilege), on, to))


def _role_name(conn: psycopg.Connection, oid: int) -> str:
    row = conn.execute("SELECT pg_get_userbyid(%s)", (oid,)).fetchone()
    if row is None:
        raise SinkError(f"no role with oid {oid}")
    return str(row[0])
