"""Lazy re-exports for package roots (PEP 562), so `import graphwright` and the CLI stay fast."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `name` from `exports[name]` on first use.

    A module path starting with `_` is relative to `package`; the value is then cached in
    the package's namespace so later lookups are plain attribute reads.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        path = f"{package}.{module}" if module.startswith("_") else module
        value = getattr(importlib.import_module(path), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
