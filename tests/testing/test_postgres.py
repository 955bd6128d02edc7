"""The throwaway PostgreSQL cluster used by the test suite (and by plugin authors)."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from graphwright.testing.postgres import PostgresCluster, PostgresClusterConfig, find_pg_bin_dir


def test_pgvector_similarity_query(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))")
        conn.execute(
            "INSERT INTO items VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0.9,0.1,0]'), (4, '[0,0,1]')"
        )
        conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)")
        rows = conn.execute(
            "SELECT id, embedding <=> '[1,0,0]' FROM items ORDER BY embedding <=> '[1,0,0]' LIMIT 2"
        ).fetchall()
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert [r[0] for r in rows] == [1, 3]
    assert rows[0][1] == pytest.approx(0.0)
    assert version is not None and version[0].startswith("0.8")


def test_each_test_gets_its_own_database(postgres_cluster: PostgresCluster, pg_url: str) -> None:
    other = postgres_cluster.create_database("isolation_check")
    assert other != pg_url and other.endswith("/isolation_check")
    assert pg_url.startswith(f"postgresql://postgres@127.0.0.1:{postgres_cluster.port}/")
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT current_database(), current_user").fetchone()
    assert row == (pg_url.rsplit("/", 1)[1], "postgres")
    postgres_cluster.drop_database("isolation_check")


def test_rejects_unsafe_database_names(postgres_cluster: PostgresCluster) -> None:
    for name in ('x"; DROP DATABASE postgres; --', "1abc", "", "a" * 64):
        with pytest.raises(ValueError, match="invalid database name"):
            postgres_cluster.create_database(name)


def _expected_owner() -> int:
    # As root the server must run as the `postgres` OS user (PostgreSQL refuses root).
    return pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()


def test_standalone_cluster_lifecycle() -> None:
    with PostgresCluster() as pg:
        data_dir = pg.data_dir
        assert data_dir.stat().st_uid == _expected_owner()
        with psycopg.connect(pg.url) as conn:
            row = conn.execute(
                "SELECT current_setting('listen_addresses'), current_setting('fsync')"
            ).fetchone()
        assert row == ("127.0.0.1", "off")
        url = pg.url
    assert not pg.running
    assert not data_dir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)
    pg.stop()  # stopping twice is harmless


def test_binaries_the_service_user_cannot_reach_are_copied() -> None:
    """The venv may sit under a directory `postgres` cannot traverse (e.g. /root, mode 0700): the
    cluster then runs from a private copy of the installation. Run as a normal user there is
    nothing to drop, so the same scenario simply works from the original place."""
    hidden = Path(tempfile.mkdtemp(prefix="gw-hidden-"))  # mode 0700, owned by us
    try:
        # Same layout as site-packages: the binaries' RPATH points at ../../../<package>.libs.
        install = find_pg_bin_dir().parent
        package = install.parent
        shutil.copytree(install, hidden / package.name / install.name, symlinks=True)
        shutil.copytree(package.parent / f"{package.name}.libs", hidden / f"{package.name}.libs")
        bin_dir = hidden / package.name / install.name / "bin"
        with PostgresCluster(PostgresClusterConfig(bin_dir=bin_dir)) as pg:
            with psycopg.connect(pg.url) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            uses_copy = pg._bin_dir.is_relative_to(pg.data_dir.parent)
        assert uses_copy == (os.geteuid() == 0)
    finally:
        shutil.rmtree(hidden)
