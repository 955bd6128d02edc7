"""`openai`: any OpenAI-compatible endpoint, through langchain-openai's ChatOpenAI.

langchain_openai and openai are imported inside the factory only: registering
the provider must not cost their ~3 s import.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from graphwright.providers._retry import Retrier, RetryConfig
from graphwright.providers._secrets import register_secret

# Without a key the openai client refuses to start; endpoints other than
# api.openai.com (our own server, vLLM, ...) usually ignore it.
_PLACEHOLDER_KEY = "not-needed"


def _default_model() -> str:
    return os.environ.get("GRAPHWRIGHT_OPENAI_MODEL") or os.environ.get("OPENAI_MODEL") or "gpt-4o-mini"


class OpenAIConfig(BaseModel):
    """Settings of the `openai` provider (`model: {provider: openai, ...}` in a spec)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default_factory=_default_model)
    base_url: str | None = Field(default=None, description="default: $OPENAI_BASE_URL")
    api_key: SecretStr | None = Field(default=None, description="default: $OPENAI_API_KEY")
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    streaming: bool = False
    retry: RetryConfig = Field(default_factory=lambda: RetryConfig())
    cache: bool = True
    cache_path: str | None = Field(default=None, description="SQLite file; no file, no cache")
    extra_body: dict[str, Any] | None = None


@functools.cache
def chat_openai_class() -> type[Any]:
    """ChatOpenAI with our retry + cache layer; built on first use (heavy import)."""
    from langchain_openai import ChatOpenAI
    from pydantic import PrivateAttr

    from graphwright.providers._cache import ResponseCache
    from graphwright.providers._reliable import ReliableMixin

    class GraphwrightChatOpenAI(ReliableMixin, ChatOpenAI):  # type: ignore[misc]
        _gw_retrier: Retrier | None = PrivateAttr(default=None)
        _gw_cache: ResponseCache | None = PrivateAttr(default=None)
        _gw_provider: str = PrivateAttr(default="openai")
        _gw_require_finish: bool = PrivateAttr(default=True)

        @classmethod
        def is_lc_serializable(cls) -> bool:
            # Serialising would name this class; the cache key is built from
            # the invocation parameters instead (model, sampling, tools).
            return False

    return GraphwrightChatOpenAI


def build_openai(config: OpenAIConfig) -> Any:
    """Provider factory of `openai`: a ChatOpenAI with retries and the cache around it."""
    from graphwright.providers._cache import open_cache

    base_url = config.base_url or os.environ.get("OPENAI_BASE_URL")
    key = config.api_key.get_secret_value() if config.api_key else os.environ.get("OPENAI_API_KEY")
    if not key:
        if not base_url:
            raise ValueError(
                "provider openai needs an API key: set api_key in the spec or OPENAI_API_KEY "
                "(or base_url / OPENAI_BASE_URL for a local OpenAI-compatible server)"
            )
        key = _PLACEHOLDER_KEY
    register_secret(key)
    kwargs: dict[str, Any] = {
        "model": config.model,
        "api_key": SecretStr(key),
        "base_url": base_url,
        "max_retries": 0,  # exactly one retry layer: ours
        "timeout": config.retry.timeout,
        "stream_usage": True,
    }
    if config.streaming:
        # Only when asked: an explicit `streaming=False` makes langchain refuse
        # to stream even from .stream() and astream_events.
        kwargs["streaming"] = True
    for name in ("temperature", "top_p", "seed", "max_tokens", "stop", "extra_body"):
        value = getattr(config, name)
        if value is not None:
            kwargs[name] = value
    model = chat_openai_class()(**kwargs)
    model._gw_retrier = Retrier(config.retry, provider="openai", model=config.model)
    # The endpoint is part of the cache key: one model name, two servers, two answers.
    model._gw_provider = f"openai:{base_url or 'https://api.openai.com/v1'}"
    if config.cache and config.cache_path:
        model._gw_cache = open_cache(config.cache_path)
    return model
