"""A throwaway PostgreSQL server for tests (or the one named by CERTSYNC_TEST_POSTGRES_URL).

`Cluster.start()` runs initdb into a temporary folder and `pg_ctl start` on a free port on
127.0.0.1 (trust authentication, fsync off: test data only). As root, PostgreSQL refuses to run,
so initdb and the server run as the `postgres` user (the Debian package creates it). The binaries
are found under /usr/lib/postgresql/*/bin (Debian keeps them off PATH), else on PATH;
scripts/test.sh installs the package when they are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

URL_ENV = "CERTSYNC_TEST_POSTGRES_URL"


class PostgresUnavailable(RuntimeError):
    pass


def bindir() -> Path | None:
    """The newest PostgreSQL server binaries installed, or None."""
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    if found:
        newest = max(found, key=lambda p: int(re.search(r"/(\d+)/bin/", p).group(1)))
        return Path(newest).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).resolve().parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) as psycopg/libpq take it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Cluster:
    """One initdb'd data folder and its server; `url` is the superuser's, to database postgres."""

    def __init__(self) -> None:
        self.bin = bindir()
        if self.bin is None:
            raise PostgresUnavailable(
                "PostgreSQL is not installed (no pg_ctl under /usr/lib/postgresql/*/bin "
                f"or on PATH): run scripts/test.sh, apt-get install postgresql, or set {URL_ENV}"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="certsync-pg-"))
        self.data = self.dir / "data"
        self.port = 0
        self._as: dict = {}
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no `postgres` user to run the server") from None
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = {
                "user": user.pw_uid,
                "group": user.pw_gid,
                "extra_groups": [],
                "env": {**os.environ, "HOME": str(self.dir)},
            }
        self.url = ""

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run([*args], cwd=self.dir, capture_output=True, text=True, timeout=timeout, **self._as)
        if result.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{tail}"
            )

    def start(self) -> Cluster:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        for attempt in range(3):  # a port picked free can be taken before the server binds it
            self.port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='{self.dir}' "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            try:
                self._run(
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.dir / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "30",
                    "start",
                )
                break
            except PostgresUnavailable:
                if attempt == 2:
                    self.stop()
                    raise
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """CREATE DATABASE `name` on the server of `server_url`; returns the URL to it."""
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reset_database(url: str) -> None:
    """Empty a test database between tests: other sessions cut off, the public schema recreated."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
