"""Test helpers for graphwright and its plugins.

Submodules are imported lazily so that `import graphwright.testing` stays cheap and needs no
test-only dependency: `from graphwright.testing.postgres import PostgresCluster`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphwright.testing.postgres import PostgresCluster

__all__ = ["PostgresCluster"]


def __getattr__(name: str) -> Any:
    if name == "PostgresCluster":
        from graphwright.testing.postgres import PostgresCluster

        return PostgresCluster
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
