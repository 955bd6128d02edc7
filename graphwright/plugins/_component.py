"""What a plugin hands to the registry: one `Component` per named thing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

ComponentKind = Literal["node_kind", "provider", "tool", "vector_store", "embedder", "metric"]

COMPONENT_KINDS: tuple[ComponentKind, ...] = (
    "node_kind",
    "provider",
    "tool",
    "vector_store",
    "embedder",
    "metric",
)

# hook name -> the component kind it registers
HOOK_KINDS: dict[str, ComponentKind] = {
    "register_node_kinds": "node_kind",
    "register_providers": "provider",
    "register_tools": "tool",
    "register_vector_stores": "vector_store",
    "register_embedders": "embedder",
    "register_metrics": "metric",
}


@dataclass(frozen=True)
class Component:
    """A named, configurable thing a plugin contributes.

    `factory(config, ...)` builds the live object: for a node kind, a node
    function `state -> update`; for a provider, a langchain `BaseChatModel`; and
    so on per kind. `config` is the pydantic model that validates the `with:`
    block of a spec (or the provider's settings) before anything runs.
    """

    name: str
    factory: Callable[..., Any]
    config: type[BaseModel] | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredComponent:
    """A component together with where it came from."""

    kind: ComponentKind
    component: Component
    plugin: str
    distribution: str
    version: str

    @property
    def name(self) -> str:
        return self.component.name


@dataclass
class NodeContext:
    """What a node factory knows about where its node sits.

    `base_dir` resolves relative file names in a node's config (templates,
    subgraph specs); `options` carries run-wide settings from the CLI or the
    caller (e.g. `provider` to override every node's model, `cache`).
    """

    node_id: str
    registry: Any  # graphwright.plugins.Registry; Any to keep this module import-light
    base_dir: Any = None  # pathlib.Path | None
    options: dict[str, Any] = field(default_factory=dict)
