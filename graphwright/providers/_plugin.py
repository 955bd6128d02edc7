"""The built-in providers as registry components (import-light: factories import lazily)."""

from __future__ import annotations

from typing import Any

from graphwright.plugins import Component
from graphwright.providers._openai import OpenAIConfig, build_openai
from graphwright.providers._script import ScriptedConfig
from graphwright.providers.local import LocalConfig, build_local


def _scripted(config: ScriptedConfig) -> Any:
    from graphwright.providers._scripted import build_scripted

    return build_scripted(config)


def components() -> list[Component]:
    """Components of kind `provider`, for `register_providers`."""
    return [
        Component(
            "openai",
            build_openai,
            config=OpenAIConfig,
            description="any OpenAI-compatible endpoint (base_url/api_key or OPENAI_* env)",
        ),
        Component(
            "scripted",
            _scripted,
            config=ScriptedConfig,
            description="deterministic replies and tool calls from a script, for tests and docs",
        ),
        Component(
            "local",
            build_local,
            config=LocalConfig,
            description="the in-process engine (arrives with the engine, issue 3)",
        ),
    ]
