"""`local`: the in-process engine. A placeholder until the engine lands."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class LocalConfig(BaseModel):
    # Accept any settings now so that specs written for the engine validate;
    # the engine's own config model replaces this when it is wired.
    model_config = ConfigDict(extra="allow")

    model: str | None = None


class LocalProviderUnavailable(RuntimeError):
    pass


def build_local(config: LocalConfig) -> Any:
    raise LocalProviderUnavailable(
        "the local engine provider arrives with the engine (issue 3); until then use "
        "provider scripted, or provider openai with OPENAI_BASE_URL pointing at any "
        "OpenAI-compatible server"
    )
