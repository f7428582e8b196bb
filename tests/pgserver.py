"""A throwaway PostgreSQL server for tests and benchmarks: initdb into a temporary directory,
listen on 127.0.0.1 at a free port (Unix socket in the same directory), stop and remove it afterwards.

initdb refuses to run as root, so when the tests run as root (CI containers) the server runs as an
unprivileged user: `postgres` when it exists (the Debian/Ubuntu package creates it), else `nobody`.
The binaries come from PATH, else from /usr/lib/postgresql/<version>/bin (Debian's layout);
install them with `apt-get install -y postgresql` (or `postgresql-15`) on a fresh machine.

    with PostgresServer() as pg:
        url = pg.create_database("t1")      # postgresql://hpo:<password>@127.0.0.1:<port>/t1
        pg.stop(); pg.start()               # an outage, same port and data
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROLE = "hpo"


class PostgresUnavailable(RuntimeError):
    pass


def find_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    raise PostgresUnavailable(
        f"PostgreSQL's {name} was not found on PATH or in /usr/lib/postgresql/*/bin; "
        "install the server binaries (Debian/Ubuntu: apt-get install -y postgresql)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _db_user() -> str | None:
    """The user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and neither a 'postgres' nor a 'nobody' user exists for initdb")


class PostgresServer:
    def __init__(self, root: str | Path | None = None, *, password: str | None = None):
        self.user = _db_user()
        # A short path (Unix sockets allow ~107 bytes) that the server's user can reach (not under /root).
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="hpo-pg-", dir="/tmp" if self.user else None))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.password = password or "pw-" + secrets.token_hex(8)
        self.initdb = find_binary("initdb")
        self.pg_ctl = find_binary("pg_ctl")
        self._initialized = False
        self._roles_made = False

    # Running commands as the database user ----------------------------------------------------
    def _as_user(self, cmd: list[str]) -> list[str]:
        if self.user is None:
            return cmd
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", self.user, "--", *cmd]
        setpriv = shutil.which("setpriv")
        if setpriv:
            entry = pwd.getpwnam(self.user)
            return [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", *cmd]
        raise PostgresUnavailable("running as root without runuser or setpriv to drop privileges for initdb")

    def _run(self, cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            self._as_user(cmd), capture_output=True, text=True, timeout=timeout, cwd=self.root, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise PostgresUnavailable(f"{' '.join(cmd[:2])} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")
        return proc

    # Life cycle -----------------------------------------------------------------------------
    def init(self) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)
        pwfile = self.root / "superuser.pw"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            os.chown(pwfile, pwd.getpwnam(self.user).pw_uid, -1)
        # Local socket: trust (the fixture's admin connection); TCP: real password authentication.
        self._run(
            [
                self.initdb,
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",  # a test database: speed over durability
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n# hpo-tui test server\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        self._initialized = True

    def start(self, timeout: float = 60) -> None:
        if not self._initialized:
            self.init()
        for attempt in range(3):
            try:
                self._run(
                    [self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(timeout)), "start"],
                    timeout=timeout + 10,
                )
                break
            except PostgresUnavailable:
                if attempt == 2 or self.running():
                    raise
                self._move_port()
        if not self._roles_made:
            self._make_role()

    def _move_port(self) -> None:
        """Another process took the port between free_port() and start: pick another."""
        self.port = free_port()
        conf = self.data / "postgresql.conf"
        conf.write_text(conf.read_text() + f"port = {self.port}\n")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (mode: smart, fast or immediate); data and port are kept for start()."""
        if self.running():
            self._run([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"])

    def running(self) -> bool:
        if not self.data.exists():
            return False
        proc = subprocess.run(
            self._as_user([self.pg_ctl, "-D", str(self.data), "status"]),
            capture_output=True,
            text=True,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
        )
        return proc.returncode == 0

    def remove(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    # Databases ------------------------------------------------------------------------------
    def admin(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(
            host=str(self.root), port=self.port, user="postgres", dbname=database, autocommit=True
        ) as conn:
            conn.execute(sql)

    def _make_role(self) -> None:
        self.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
        self._roles_made = True

    def create_database(self, name: str) -> str:
        """A fresh database owned by the test role; returns its URL (with the password)."""
        self.admin(f'CREATE DATABASE "{name}" OWNER {ROLE}')
        return self.url(name)

    def url(self, database: str, *, password: bool = True) -> str:
        secret = f":{self.password}" if password else ""
        return f"postgresql://{ROLE}{secret}@127.0.0.1:{self.port}/{database}"

    def wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.time() + timeout
        while True:
            try:
                psycopg.connect(
                    host="127.0.0.1",
                    port=self.port,
                    user=ROLE,
                    password=self.password,
                    dbname="postgres",
                    connect_timeout=2,
                ).close()
                return
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)


# pytest fixtures (exposed in tests/conftest.py) ---------------------------------------------------
try:
    import pytest
except ImportError:  # benchmarks use PostgresServer without pytest
    pytest = None

if pytest is not None:

    def _server_or_fail() -> PostgresServer:
        try:
            server = PostgresServer()
            server.start()
            return server
        except PostgresUnavailable as err:  # a missing PostgreSQL is a broken test machine, not a skip
            pytest.fail(f"cannot start a throwaway PostgreSQL: {err}", pytrace=False)

    @pytest.fixture(scope="session")
    def postgres():
        """One throwaway PostgreSQL server for the test session (per xdist worker)."""
        server = _server_or_fail()
        yield server
        server.remove()

    @pytest.fixture
    def pg_url(postgres, request):
        """A fresh database on the session's server: postgresql://hpo:<password>@127.0.0.1:<port>/<db>."""
        name = "t_" + secrets.token_hex(6)
        return postgres.create_database(name)

    @pytest.fixture
    def private_postgres():
        """A server of the test's own, for tests that stop and restart it."""
        server = _server_or_fail()
        yield server
        server.remove()
