"""Model providers: each builds a langchain `BaseChatModel`.

Built-ins: `openai` (any OpenAI-compatible endpoint), `scripted` (deterministic,
for tests), `local` (the engine; wired when it lands). All share one retry layer
(tenacity; the SDK's own retries are off) and a SQLite response cache used for
deterministic calls only. `UsageRecorder` records tokens, latency, TTFT, cost
and cache hits per call, per node and per run.

Heavy names (langchain models) load on first attribute access, so that
`import graphwright.providers` stays cheap for the CLI and plugin listing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphwright._lazy import lazy_exports
from graphwright.providers._errors import Attempt, ProviderError
from graphwright.providers._openai import OpenAIConfig
from graphwright.providers._plugin import components
from graphwright.providers._retry import Retrier, RetryConfig, classify
from graphwright.providers._script import (
    ScriptedConfig,
    ScriptedError,
    ScriptedReply,
    ScriptedRule,
    ScriptedToolCall,
)
from graphwright.providers._secrets import register_secret, scrub
from graphwright.providers.local import LocalConfig, LocalProviderUnavailable

if TYPE_CHECKING:
    from graphwright.providers._cache import ResponseCache, open_cache
    from graphwright.providers._scripted import (
        ScriptedCall,
        ScriptedChatModel,
        ScriptedHTTPError,
        ScriptExhausted,
    )
    from graphwright.providers._usage import CallRecord, Price, PriceTable, ToolRecord, UsageRecorder

_LAZY = {
    "ResponseCache": "_cache",
    "open_cache": "_cache",
    "ScriptedCall": "_scripted",
    "ScriptedChatModel": "_scripted",
    "ScriptedHTTPError": "_scripted",
    "ScriptExhausted": "_scripted",
    "CallRecord": "_usage",
    "Price": "_usage",
    "PriceTable": "_usage",
    "ToolRecord": "_usage",
    "UsageRecorder": "_usage",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "Attempt",
    "CallRecord",
    "LocalConfig",
    "LocalProviderUnavailable",
    "OpenAIConfig",
    "Price",
    "PriceTable",
    "ProviderError",
    "ResponseCache",
    "Retrier",
    "RetryConfig",
    "ScriptExhausted",
    "ScriptedCall",
    "ScriptedChatModel",
    "ScriptedConfig",
    "ScriptedError",
    "ScriptedHTTPError",
    "ScriptedReply",
    "ScriptedRule",
    "ScriptedToolCall",
    "ToolRecord",
    "UsageRecorder",
    "classify",
    "components",
    "open_cache",
    "register_secret",
    "scrub",
]
