"""The plugin registry: discovery through real entry points, duplicates, broken plugins."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from graphwright.plugins import (
    Component,
    DuplicateComponentError,
    PluginError,
    PluginLoadWarning,
    Registry,
    UnknownComponentError,
    hookimpl,
)


def _install_fake_dist(site: Path, dist: str, version: str, ep_name: str, module: str,
                       source: str) -> None:
    """A real installed distribution as importlib.metadata sees one: a *.dist-info with
    METADATA and entry_points.txt, next to the module it points to."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[graphwright.plugins]\n{ep_name} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "site"
    d.mkdir()
    monkeypatch.syspath_prepend(str(d))  # undone after the test, so no other test sees it
    yield d
    for name in [m for m in sys.modules if m.startswith("gwtest_")]:
        del sys.modules[name]


PLUGIN = """
from graphwright.plugins import Component, hookimpl

@hookimpl
def register_node_kinds():
    return [Component({name!r}, lambda config, ctx=None: (lambda state: {{}}), None, "x")]
"""


def test_broken_plugin_warns_and_the_others_still_load(site: Path) -> None:
    _install_fake_dist(site, "gw-broken-plugin", "9.9", "broken", "gwtest_broken",
                       "raise RuntimeError('kaboom at import')\n")
    _install_fake_dist(site, "gw-fine-plugin", "1.0", "fine", "gwtest_fine",
                       PLUGIN.format(name="fine_kind"))
    importlib.invalidate_caches()
    with pytest.warns(PluginLoadWarning) as caught:
        reg = Registry.discover()
    text = " ".join(str(w.message) for w in caught)
    assert "'broken'" in text and "gw-broken-plugin" in text
    assert "RuntimeError: kaboom at import" in text
    assert reg.load_errors == [str(w.message) for w in caught]
    # built-ins, the installed fixture plugin and the healthy fake one are all there
    for name in ("python", "template", "subgraph", "map", "word_count", "fine_kind"):
        assert reg.has("node_kind", name), name
    assert reg.get("node_kind", "fine_kind").distribution == "gw-fine-plugin"
    assert reg.get("node_kind", "fine_kind").version == "1.0"


def test_duplicate_component_names_both_distributions(site: Path) -> None:
    _install_fake_dist(site, "gw-alpha", "1.2", "alpha", "gwtest_alpha",
                       PLUGIN.format(name="clash"))
    _install_fake_dist(site, "gw-beta", "3.4", "beta", "gwtest_beta",
                       PLUGIN.format(name="clash"))
    importlib.invalidate_caches()
    with pytest.raises(DuplicateComponentError) as info:
        Registry.discover()
    msg = str(info.value)
    assert "'clash'" in msg
    assert "gw-alpha 1.2" in msg and "gw-beta 3.4" in msg
    assert {info.value.first.distribution, info.value.second.distribution} == {"gw-alpha",
                                                                               "gw-beta"}


def test_duplicate_of_a_builtin_in_process() -> None:
    class Shadow:
        @hookimpl
        def register_node_kinds(self):
            return [Component("python", lambda c: None)]

    reg = Registry.discover(entry_points=False)
    reg.add_plugin(__import__("graphwright._builtins", fromlist=["x"]), name="builtins",
                   distribution="graphwright", version="0.1.0")
    with pytest.raises(DuplicateComponentError, match=r"graphwright 0\.1\.0.*my-dist 7"):
        reg.add_plugin(Shadow(), name="shadow", distribution="my-dist", version="7")


def test_unknown_kind_suggests_the_closest_name() -> None:
    reg = Registry.discover()
    with pytest.raises(UnknownComponentError) as info:
        reg.get("node_kind", "templte")
    assert "did you mean 'template'?" in str(info.value)
    assert "word_count" in str(info.value)  # lists what is registered
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownComponentError) as far:
        reg.get("provider", "zzzzzz")
    assert "did you mean" not in str(far.value)


def test_hook_returning_a_non_component_is_an_error() -> None:
    class Bad:
        @hookimpl
        def register_tools(self):
            return ["not a component"]

    with pytest.raises(PluginError, match="returned str from its tool hook"):
        Registry.discover(entry_points=False, plugins=[Bad()])


def test_in_process_plugins_every_hook_and_build() -> None:
    from pydantic import BaseModel

    class Cfg(BaseModel):
        k: int = 1

    class Many:
        @hookimpl
        def register_providers(self):
            return [Component("echo", lambda cfg: ("echo", cfg.k), Cfg, "p")]

        @hookimpl
        def register_metrics(self):
            return [Component("exact", lambda: "metric")]

    reg = Registry.discover(entry_points=False, plugins=[Many()])
    assert [c.kind for c in reg.all()] == ["provider", "metric"]
    assert reg.build("provider", "echo", {"k": 5}) == ("echo", 5)
    assert reg.build("provider", "echo") == ("echo", 1)
    assert reg.build("metric", "exact") == "metric"
    assert reg.names("node_kind") == []  # entry_points=False: not even the built-ins


def test_a_plugin_whose_hook_raises_is_skipped_whole(site: Path) -> None:
    _install_fake_dist(site, "gw-lazy", "0.2", "lazy", "gwtest_lazy", """
from graphwright.plugins import Component, hookimpl

@hookimpl
def register_tools():
    return [Component("half_registered_tool", lambda: None)]

@hookimpl
def register_node_kinds():
    import gwtest_missing_optional_dependency  # a lazy import inside the hook
""")
    importlib.invalidate_caches()
    with pytest.warns(PluginLoadWarning, match="gw-lazy 0.2.*ModuleNotFoundError"):
        reg = Registry.discover()
    assert not reg.has("tool", "half_registered_tool")  # all of a plugin or none of it
    assert reg.has("node_kind", "python") and reg.has("node_kind", "word_count")


def test_same_entry_point_name_in_two_distributions(site: Path) -> None:
    _install_fake_dist(site, "gw-one", "1.0", "plugin", "gwtest_one", PLUGIN.format(name="one"))
    _install_fake_dist(site, "gw-two", "2.0", "plugin", "gwtest_two", PLUGIN.format(name="two"))
    importlib.invalidate_caches()
    reg = Registry.discover()
    assert reg.get("node_kind", "one").distribution == "gw-one"
    assert reg.get("node_kind", "two").distribution == "gw-two"
    assert reg.get("node_kind", "one").plugin != reg.get("node_kind", "two").plugin
