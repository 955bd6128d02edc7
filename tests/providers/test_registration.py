"""Built-ins register through the plugin hooks, cheaply."""

from __future__ import annotations

import subprocess
import sys

import pytest

from graphwright.plugins import Registry


def test_every_builtin_is_registered_with_a_config_model(registry: Registry) -> None:
    assert registry.names("provider") == ["local", "openai", "scripted"]
    assert registry.names("tool") == ["calculator", "http_get", "python"]
    assert set(registry.names("node_kind")) >= {"agent", "llm", "planner", "router"}
    for entry in registry.all():
        assert entry.component.config is not None and entry.component.description


def test_registering_imports_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from graphwright import agents, providers, tools\n"
        "providers.components(); tools.components(); agents.components()\n"
        "heavy = [m for m in ('openai', 'langchain_openai', 'torch', 'langchain_core', 'langgraph')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_settings_are_validated_before_building(registry: Registry) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="attempts"):
        registry.build("provider", "openai", {"retry": {"attempts": 0}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        registry.build("provider", "scripted", {"replys": ["typo"]})


def test_openai_needs_a_key_or_an_endpoint(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="needs an API key"):
        registry.build("provider", "openai", {})
    model = registry.build("provider", "openai", {"base_url": "http://127.0.0.1:9/v1"})
    assert model.max_retries == 0  # one retry layer: ours
