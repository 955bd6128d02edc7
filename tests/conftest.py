"""Project-wide fixtures. PostgreSQL tests share one throwaway cluster per session (it starts in
about a second) and get a fresh database each, so they never see each other's rows."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from graphwright.plugins import Registry
from graphwright.testing.postgres import PostgresCluster

_db_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL 18 + pgvector cluster on 127.0.0.1, stopped and deleted after the session."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(postgres_cluster: PostgresCluster) -> str:
    """URL of a new, empty database in the session cluster."""
    return postgres_cluster.create_database(f"test_{next(_db_numbers)}")


@pytest.fixture(scope="session")
def registry() -> Registry:
    """graphwright's built-ins, registered through their plugin module exactly as the entry
    point does, without any other installed plugin."""
    return builtin_registry()


def builtin_registry() -> Registry:
    import graphwright._builtins as builtins

    return Registry.discover(entry_points=False, plugins=[builtins])
