"""Plugin registry: pluggy hookspecs, entry-point discovery, components."""

from graphwright.plugins._component import (
    COMPONENT_KINDS,
    Component,
    ComponentKind,
    NodeContext,
    RegisteredComponent,
)
from graphwright.plugins._registry import (
    DuplicateComponentError,
    PluginError,
    PluginLoadWarning,
    Registry,
    UnknownComponentError,
    default_registry,
)
from graphwright.plugins.hookspecs import ENTRY_POINT_GROUP, hookimpl, hookspec

__all__ = [
    "COMPONENT_KINDS",
    "ENTRY_POINT_GROUP",
    "Component",
    "ComponentKind",
    "DuplicateComponentError",
    "NodeContext",
    "PluginError",
    "PluginLoadWarning",
    "RegisteredComponent",
    "Registry",
    "UnknownComponentError",
    "default_registry",
    "hookimpl",
    "hookspec",
]
