"""graphwright's local inference engine: a Llama-family model in plain torch (Triton on CUDA),
a paged KV cache with prefix reuse, continuous batching and an OpenAI-compatible server.

It imports nothing else of graphwright. The public API (names resolve lazily, so importing
a submodule does not load torch-heavy siblings):

    from graphwright.engine import LocalEngine, SamplingParams

    engine = LocalEngine.load("smollm2")               # alias, .gguf path or HF folder
    out = engine.chat([{"role": "user", "content": "Hi"}], SamplingParams(max_tokens=32))
    for event in engine.submit("Once upon a time", SamplingParams(max_tokens=16)):
        print(event.text, end="")

- `LocalEngine.load(model, **EngineConfig fields)`; `submit(prompt, params, constraint)` ->
  `RequestHandle` (sync/async iteration of `StreamEvent`s, `.result()`, `.cancel()`);
  `generate`, `chat`, `encode_chat`, `stats()`, `close()`.
- `SamplingParams`: greedy/temperature/top-k/top-p/min-p, penalties, seed, stop, n, best_of,
  logprobs. `TokenConstraint`: the hook grammar-constrained decoding plugs into.
- `LocalChatModel`: the engine as a LangChain chat model (tools and structured output
  through xgrammar). `create_app(engine)` / `serve(...)`: the OpenAI HTTP API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "LocalEngine": "graphwright.engine.llm",
    "RequestHandle": "graphwright.engine.llm",
    "RequestOutput": "graphwright.engine.llm",
    "RequestError": "graphwright.engine.llm",
    "StreamEvent": "graphwright.engine.llm",
    "EngineConfig": "graphwright.engine.config",
    "ModelConfig": "graphwright.engine.config",
    "SamplingParams": "graphwright.engine.sampling",
    "TokenConstraint": "graphwright.engine.sampling",
    "ModelLoadError": "graphwright.engine.weights",
    "LocalChatModel": "graphwright.engine.chat_model",
    "create_app": "graphwright.engine.server",
    "serve": "graphwright.engine.server",
}

__all__ = [
    "EngineConfig",
    "LocalChatModel",
    "LocalEngine",
    "ModelConfig",
    "ModelLoadError",
    "RequestError",
    "RequestHandle",
    "RequestOutput",
    "SamplingParams",
    "StreamEvent",
    "TokenConstraint",
    "create_app",
    "serve",
]

if TYPE_CHECKING:
    from graphwright.engine.chat_model import LocalChatModel
    from graphwright.engine.config import EngineConfig, ModelConfig
    from graphwright.engine.llm import (
        LocalEngine,
        RequestError,
        RequestHandle,
        RequestOutput,
        StreamEvent,
    )
    from graphwright.engine.sampling import SamplingParams, TokenConstraint
    from graphwright.engine.server import create_app, serve
    from graphwright.engine.weights import ModelLoadError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'graphwright.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
