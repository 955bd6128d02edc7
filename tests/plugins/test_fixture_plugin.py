"""The fixture plugin (tests/fixtures/gw_fixture_plugin) is a real third-party package,
pip-installed into the venv by the set-up. It is found through its entry point, its node
kind runs in a spec through the CLI, and it passes the conformance suite (its own
tests/test_conformance.py, collected through testpaths)."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from graphwright.graphs import check, load_spec
from graphwright.plugins import ENTRY_POINT_GROUP, Registry

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "gw_fixture_plugin"
GRAPHWRIGHT = str(Path(sys.executable).with_name("graphwright"))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([GRAPHWRIGHT, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_installed_as_a_distribution_with_an_entry_point() -> None:
    dist = md.distribution("gw-fixture-plugin")
    eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
    assert [(ep.name, ep.value) for ep in eps] == [("fixture", "gw_fixture_plugin")]
    # the installed package is this checkout's fixture (editable install)
    import gw_fixture_plugin

    assert Path(gw_fixture_plugin.__file__).resolve().is_relative_to(FIXTURE)


def test_discovered_through_the_entry_point() -> None:
    reg = Registry.discover()
    entry = reg.get("node_kind", "word_count")
    assert (entry.plugin, entry.distribution) == ("fixture", "gw-fixture-plugin")
    assert entry.version == md.version("gw-fixture-plugin")
    # its config model validates `with:` before any node runs
    spec = load_spec(FIXTURE / "gw_fixture_plugin" / "example.yaml")
    issues, configs = check(spec, reg)
    assert issues == []
    assert configs["count"].reads() == ["text"] and configs["count"].writes() == ["words"]


def test_plugin_node_kind_runs_through_the_cli(tmp_path: Path) -> None:
    shutil.copy(FIXTURE / "gw_fixture_plugin" / "example.yaml", tmp_path / "spec.yaml")
    res = _cli("run", "spec.yaml", "-i", "text=a bb ccc dddd", "--json",
               "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    final = json.loads(res.stdout)
    assert final["words"] == 3  # min_length: 2 drops "a"
    assert final["summary"] == "3 words"


def test_plugins_list_json_shows_the_fixture(tmp_path: Path) -> None:
    res = _cli("plugins", "list", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    listing = json.loads(res.stdout)
    rows = {(c["kind"], c["name"]): c for c in listing["components"]}
    fixture = rows[("node_kind", "word_count")]
    assert fixture["plugin"] == "fixture"
    assert fixture["distribution"] == "gw-fixture-plugin"
    assert fixture["version"] == md.version("gw-fixture-plugin")
    assert fixture["description"] == "count the words of a text channel"
    assert rows[("node_kind", "python")]["distribution"] == "graphwright"
    assert listing["errors"] == []


def test_the_fixture_conformance_suite_is_collected() -> None:
    """The plugin's own conformance tests sit under testpaths, so `make test` runs them."""
    import tomllib

    root = FIXTURE.parents[2]
    conf = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    conformance = FIXTURE / "tests" / "test_conformance.py"
    assert any(conformance.is_relative_to(root / p) for p in conf["testpaths"])
    assert "NodeKindConformance" in conformance.read_text()
