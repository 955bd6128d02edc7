"""Plugin discovery and the component registry."""

from __future__ import annotations

import difflib
import importlib.metadata as md
import warnings
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import pluggy

from graphwright.plugins._component import (
    COMPONENT_KINDS,
    HOOK_KINDS,
    Component,
    ComponentKind,
    RegisteredComponent,
)
from graphwright.plugins.hookspecs import ENTRY_POINT_GROUP, PROJECT, GraphwrightHookspecs


class PluginError(Exception):
    """Base class of registry errors."""


class DuplicateComponentError(PluginError):
    def __init__(self, first: RegisteredComponent, second: RegisteredComponent) -> None:
        self.first, self.second = first, second
        super().__init__(
            f"{first.kind} {first.name!r} is registered twice: by plugin {first.plugin!r} "
            f"(distribution {first.distribution} {first.version}) and by plugin "
            f"{second.plugin!r} (distribution {second.distribution} {second.version}); "
            "uninstall one of them or rename the component"
        )


class UnknownComponentError(PluginError, KeyError):
    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(sorted(known)) or "none"
        self.message = f"unknown {kind.replace('_', ' ')} {name!r}{hint} (registered: {listing})"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class PluginLoadWarning(UserWarning):
    """A plugin failed to import; the others still load."""


class Registry:
    """All components of all plugins, keyed by (kind, name)."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(GraphwrightHookspecs)
        self._origin: dict[str, tuple[str, str]] = {}  # plugin name -> (dist, version)
        self._components: dict[tuple[ComponentKind, str], RegisteredComponent] = {}
        self.load_errors: list[str] = []

    # -- building --------------------------------------------------------
    @classmethod
    def discover(cls, *, entry_points: bool = True, plugins: Iterable[Any] = ()) -> Registry:
        """Load every installed plugin (entry-point group `graphwright.plugins`)."""
        reg = cls()
        if entry_points:
            for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                dist = ep.dist.name if ep.dist else "unknown"
                version = ep.dist.version if ep.dist else "?"
                try:
                    module = ep.load()
                except Exception as exc:  # a broken plugin must not take the others down
                    msg = (
                        f"graphwright plugin {ep.name!r} ({ep.value}, distribution {dist} "
                        f"{version}) failed to import and was skipped: "
                        f"{type(exc).__name__}: {exc}"
                    )
                    reg.load_errors.append(msg)
                    warnings.warn(msg, PluginLoadWarning, stacklevel=2)
                    continue
                try:
                    reg.add_plugin(module, name=ep.name, distribution=dist, version=version)
                except DuplicateComponentError:
                    raise  # two plugins claim one name: the user must choose, never a guess
                except Exception as exc:  # its hook raised (e.g. a lazy import inside it)
                    msg = (
                        f"graphwright plugin {ep.name!r} ({ep.value}, distribution {dist} "
                        f"{version}) failed to register its components and was skipped: "
                        f"{type(exc).__name__}: {exc}"
                    )
                    reg.load_errors.append(msg)
                    warnings.warn(msg, PluginLoadWarning, stacklevel=2)
        for obj in plugins:
            reg.add_plugin(obj)
        return reg

    def add_plugin(
        self,
        plugin: Any,
        *,
        name: str | None = None,
        distribution: str = "(in-process)",
        version: str = "",
    ) -> None:
        """Register a plugin object or module and collect its components."""
        pname = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if self._pm.is_registered(plugin):
            return  # the same module found twice (e.g. twice on sys.path)
        if self._pm.has_plugin(pname):
            # entry-point names are only unique within a distribution: two packages may
            # both call theirs "plugin"; neither may silently hide the other
            pname = f"{pname} ({distribution})"
        self._pm.register(plugin, name=pname)
        self._origin[pname] = (distribution, version)
        found: list[tuple[ComponentKind, Any]] = []
        try:
            for hook_name, kind in HOOK_KINDS.items():
                hook = getattr(self._pm.hook, hook_name)
                for impl in hook.get_hookimpls():
                    if impl.plugin_name == pname:
                        found.extend((kind, comp) for comp in impl.function() or ())
            for kind, comp in found:
                if not isinstance(comp, Component):
                    raise PluginError(
                        f"plugin {pname!r} returned {type(comp).__name__} from its {kind} hook; "
                        "expected graphwright.plugins.Component"
                    )
        except Exception:
            self._pm.unregister(name=pname)  # all of a plugin or none of it
            raise
        for kind, comp in found:
            self._add(kind, comp, pname)

    def _add(self, kind: ComponentKind, comp: Component, plugin: str) -> None:
        if not isinstance(comp, Component):
            raise PluginError(
                f"plugin {plugin!r} returned {type(comp).__name__} from its {kind} hook; "
                "expected graphwright.plugins.Component"
            )
        dist, version = self._origin[plugin]
        entry = RegisteredComponent(kind, comp, plugin, dist, version)
        key = (kind, comp.name)
        if key in self._components:
            raise DuplicateComponentError(self._components[key], entry)
        self._components[key] = entry

    # -- reading ---------------------------------------------------------
    def get(self, kind: ComponentKind, name: str) -> RegisteredComponent:
        try:
            return self._components[(kind, name)]
        except KeyError:
            raise UnknownComponentError(kind, name, self.names(kind)) from None

    def has(self, kind: ComponentKind, name: str) -> bool:
        return (kind, name) in self._components

    def names(self, kind: ComponentKind) -> list[str]:
        return sorted(n for k, n in self._components if k == kind)

    def all(self) -> list[RegisteredComponent]:
        order = {k: i for i, k in enumerate(COMPONENT_KINDS)}
        return sorted(self._components.values(), key=lambda c: (order[c.kind], c.name))

    def build(self, kind: ComponentKind, name: str, config: Any = None, /, **kwargs: Any) -> Any:
        """Validate `config` with the component's model and call its factory."""
        comp = self.get(kind, name).component
        if comp.config is not None:
            if not isinstance(config, comp.config):
                config = comp.config.model_validate(config or {})
            return comp.factory(config, **kwargs)
        return comp.factory(**kwargs) if config is None else comp.factory(config, **kwargs)


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of every installed plugin, discovered once per process."""
    return Registry.discover()
