"""A PostgreSQL cluster from Debian's packages, initialized and run on a loopback port.

Authentication is ``trust`` for connections from 127.0.0.1: this is a development stack that
listens on the loopback interface only; never expose it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from devstack.exceptions import (
    CommandFailedError,
    MissingToolError,
    StartupError,
    StatePathError,
)
from devstack.host import (
    LOOPBACK,
    apt_install,
    install_command,
    is_root,
    log_tail,
    process_alive,
    process_cmdline,
    read_pid,
    require_port_free,
    run_command,
)

POSTGRES_OS_USER = "postgres"
SUPERUSER = "postgres"
APP_ROLE = "speechstream"
APP_DATABASE = "speechstream"
DEBIAN_PACKAGE = "postgresql"


def find_bin_dir(configured: Path | None = None) -> Path | None:
    """The directory holding ``initdb``/``pg_ctl``: the configured one, Debian's newest, or PATH."""
    if configured is not None:
        return configured if (configured / "initdb").exists() else None
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def require_bin_dir(configured: Path | None, *, install: bool) -> Path:
    """Like ``find_bin_dir``, installing Debian's ``postgresql`` when allowed and missing."""
    found = find_bin_dir(configured)
    if found is None and configured is None and install and is_root() and shutil.which("apt-get"):
        apt_install([DEBIAN_PACKAGE])
        found = find_bin_dir(None)
    if found is None:
        where = f" in {configured}" if configured else ""
        raise MissingToolError(
            f"PostgreSQL server binaries (initdb, pg_ctl) not found{where}; "
            f"install them with: {install_command([DEBIAN_PACKAGE])}"
        )
    return found


def render_conf(port: int) -> str:
    """Settings appended to ``postgresql.conf``: TCP on the loopback only, no unix socket."""
    return (
        "\n# speechstream dev stack\n"
        f"listen_addresses = '{LOOPBACK}'\n"
        f"port = {port}\n"
        "unix_socket_directories = ''\n"
        "max_connections = 200\n"
    )


def conninfo(port: int, *, user: str = APP_ROLE, dbname: str = APP_DATABASE) -> str:
    """A ``postgresql://`` URL for ``user`` and ``dbname`` on this cluster."""
    return f"postgresql://{user}@{LOOPBACK}:{port}/{dbname}"


@dataclass(frozen=True)
class PostgresNode:
    """One cluster: data dir and log under ``base_dir``, binaries from ``bin_dir``."""

    base_dir: Path
    bin_dir: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def database_url(self) -> str:
        return conninfo(self.port)

    @property
    def _os_user(self) -> str | None:
        # initdb and postgres refuse to run as root.
        return POSTGRES_OS_USER if is_root() else None

    def running_pid(self) -> int | None:
        """The postmaster's pid when this cluster runs (checked against its command line)."""
        pid = read_pid(self.data_dir / "postmaster.pid")
        if pid is None or not process_alive(pid):
            return None
        return pid if str(self.data_dir) in process_cmdline(pid) else None

    def init(self) -> bool:
        """Create the cluster once (``initdb``); False when it already existed."""
        if (self.data_dir / "PG_VERSION").exists():
            return False
        self._prepare_base_dir()
        run_command(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
             "--auth=trust", "-E", "UTF8", "--locale=C", "--no-instructions"],
            what="initdb",
            user=self._os_user,
            timeout=300,
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(render_conf(self.port))
        return True

    def _prepare_base_dir(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        user = self._os_user
        if user is None:
            return
        shutil.chown(self.base_dir, user, user)
        try:
            run_command(["test", "-w", str(self.base_dir)], what="access check", user=user)
        except CommandFailedError as exc:
            raise StatePathError(
                f"the {user} OS user cannot write {self.base_dir} (PostgreSQL refuses to run as "
                "root, so it runs as that user); use a state dir every user can traverse, e.g. "
                "SPEECHSTREAM_DEV_STATE_DIR=/var/tmp/speechstream-dev"
            ) from exc

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the cluster and wait until it accepts connections."""
        require_port_free(self.port, "postgres", "SPEECHSTREAM_DEV_POSTGRES_PORT")
        run_command(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
             "-o", f"-p {self.port}", "-w", "-t", str(int(timeout_s)), "start"],
            what="starting PostgreSQL",
            user=self._os_user,
            timeout=timeout_s + 30,
        )
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the superuser can connect; raise ``StartupError`` otherwise."""
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.admin_conninfo(), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.2)
        raise StartupError(
            f"postgres did not accept connections on port {self.port} within {timeout_s:.0f}s "
            f"({last}); see {self.log_file}:\n{log_tail(self.log_file)}"
        )

    def stop(
        self, timeout_s: float = 60.0, *, mode: Literal["smart", "fast", "immediate"] = "fast"
    ) -> bool:
        """Stop the cluster (fast shutdown; ``immediate`` kills it like a crash, and its next
        start recovers); False when it was not running."""
        if self.running_pid() is None:
            return False
        run_command(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w",
             "-t", str(int(timeout_s)), "stop"],
            what="stopping PostgreSQL",
            user=self._os_user,
            timeout=timeout_s + 30,
        )
        return True

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        """The superuser's connection URL."""
        return conninfo(self.port, user=SUPERUSER, dbname=dbname)

    def ensure_app_database(self) -> str:
        """Create role and database ``speechstream`` when missing; return the app's URL."""
        with psycopg.connect(self.admin_conninfo(), autocommit=True) as conn:
            role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [APP_ROLE])
            if role.fetchone() is None:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(APP_ROLE))
                )
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [APP_DATABASE]
            ).fetchone()
            if exists is None:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(APP_DATABASE), sql.Identifier(APP_ROLE)
                    )
                )
        return self.database_url


def database_info(database_url: str, *, timeout_s: int = 3) -> tuple[str | None, str | None]:
    """``(server version, None)`` when the database answers, ``(None, reason)`` otherwise."""
    try:
        with psycopg.connect(database_url, connect_timeout=timeout_s) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        return None, str(exc).strip() or type(exc).__name__
    return (str(row[0]) if row else "unknown"), None
