"""A throwaway PostgreSQL 15 cluster for tests and benchmarks.

`initdb` and `pg_ctl` from Debian's package run as the `postgres` user when we
are root (the server refuses to run as root), as ourselves otherwise.  Data
directory, Unix socket and log live in one fresh temporary directory that
`stop()` removes.  fsync stays ON: what the tests say about durability is
real.  Administration goes over the Unix socket (trust, the directory is
0700); the application role logs in over loopback TCP with a password that
only a libpq passfile (0600) holds, never a URL.

    cluster = PgCluster()
    cluster.start()
    db = cluster.create_database()        # a fresh database, owned by the role
    Store(db.url, passfile=cluster.passfile)
    cluster.stop()
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

PG_BIN = Path(os.environ.get("ERPATH_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_USER = "postgres"  # the OS user the server runs as when we are root
ROLE = "erpath"  # the application's database role
ADMIN = "postgres"  # the cluster's superuser (trust over the socket only)


class PgClusterError(RuntimeError):
    """The cluster could not be set up (a test error, never a skip)."""


def unavailable_reason() -> str | None:
    """Why no cluster can run here, or None when one can."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            return (
                f"PostgreSQL 15 is not installed ({PG_BIN / tool} missing): "
                "apt-get install postgresql (make debs does it as root)"
            )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root but there is no {SERVER_USER!r} user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True, slots=True)
class PgDatabase:
    """One database of the cluster: how the application reaches it."""

    name: str
    url: str  # postgresql://erpath@127.0.0.1:port/name — no password
    passfile: Path


class PgCluster:
    """One PostgreSQL cluster in a temporary directory; `start()`, then `stop()`."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.port = 0
        self.password = secrets.token_urlsafe(24)
        self._names = itertools.count(1)
        self._admin: psycopg.Connection | None = None

    # ----------------------------------------------------------------- paths

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "socket"

    @property
    def passfile(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "pgpass"

    @property
    def log_file(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "server.log"

    def url(self, dbname: str) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{dbname}"

    # ----------------------------------------------------------------- lifecycle

    def _run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        cmd = [str(a) for a in args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            log = ""
            if self.root is not None and self.log_file.exists():
                log = self.log_file.read_text(errors="replace")[-2000:]
            raise PgClusterError(
                f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}\n{log}"
            )
        return proc

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise PgClusterError(reason)
        self.root = Path(tempfile.mkdtemp(prefix="erpath-pg-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        assert self.root is not None
        self.socket_dir.mkdir(mode=0o700)
        if os.geteuid() == 0:
            server = pwd.getpwnam(SERVER_USER)
            for path in (self.root, self.socket_dir):
                os.chown(path, server.pw_uid, server.pw_gid)
        self._run(
            PG_BIN / "initdb",
            "-D",
            self.data_dir,
            "-U",
            ADMIN,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        )
        # Loopback TCP on a free port plus the socket.  A port taken between the probe
        # and the bind fails the start; try a few.
        for attempt in range(5):
            self.port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port}"
                f" -c unix_socket_directories={self.socket_dir}"
                " -c fsync=on -c synchronous_commit=on -c max_connections=200"
                " -c shared_buffers=32MB"
            )
            try:
                self._run(
                    PG_BIN / "pg_ctl",
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    self.data_dir,
                    "-l",
                    self.log_file,
                    "-o",
                    options,
                )
                break
            except PgClusterError:
                if attempt == 4:
                    raise
        self._admin = psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=ADMIN, dbname="postgres",
            autocommit=True,
        )  # fmt: skip
        self._admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(self.password)
            )
        )
        # libpq passfile: host:port:database:user:password, one line per host form.
        lines = [
            f"{host}:{self.port}:*:{ROLE}:{self.password}"
            for host in ("127.0.0.1", "localhost", str(self.socket_dir))
        ]
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")

    def stop(self) -> None:
        """Stop the server and remove everything it had."""
        if self._admin is not None:
            with contextlib.suppress(psycopg.Error):
                self._admin.close()
            self._admin = None
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(PgClusterError):
                self._run(PG_BIN / "pg_ctl", "stop", "-D", self.data_dir, "-m", "immediate", "-w")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    # ----------------------------------------------------------------- databases

    def admin(self, statement: str) -> None:
        """Run one statement as the superuser (autocommit)."""
        assert self._admin is not None, "cluster not started"
        self._admin.execute(statement)  # type: ignore[arg-type]

    def create_database(self, template: str | None = None, name: str | None = None) -> PgDatabase:
        """A fresh database owned by the application role; empty unless a template is given."""
        assert self._admin is not None, "cluster not started"
        name = name or f"erpath_{os.getpid()}_{next(self._names)}"
        stmt = sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(ROLE)
        )
        if template:
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        self._admin.execute(stmt)
        # PostgreSQL 15 lets the database's owner (pg_database_owner) create in `public`.
        return PgDatabase(name, self.url(name), self.passfile)

    def mark_template(self, name: str) -> None:
        """Let `name` be copied by create_database(template=name); nobody may be connected."""
        assert self._admin is not None, "cluster not started"
        self._admin.execute(
            sql.SQL("ALTER DATABASE {} IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                sql.Identifier(name)
            )
        )

    def drop_database(self, name: str) -> None:
        """Drop a database, ending whatever sessions still use it."""
        assert self._admin is not None, "cluster not started"
        self._admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
