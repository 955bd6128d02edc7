"""`local`: the in-process engine (graphwright.engine) as a LangChain chat model.

One engine per model and options is shared by every node in the process, so the
nodes of a graph (and the rows of an eval) join one continuously batched decode.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class LocalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="smollm2", description="alias, .gguf path, or a Hugging Face folder")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        default=None, description="default: float32 on CPU (exact), bfloat16 on CUDA")
    quantize: Literal["none", "int8", "int4"] = "none"
    device: str | None = None
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=256, ge=1)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    seed: int | None = None
    stop: list[str] | None = None
    # SmolLM2-135M never starts a tool call on its own; with "call_then_answer" each
    # user turn gets one (grammar-constrained) call, then a text answer.
    auto_tool_choice: Literal["model", "call_then_answer"] = "call_then_answer"


class LocalProviderUnavailable(RuntimeError):
    """The engine's dependencies (torch, gguf, tokenizers, xgrammar) are not installed."""


def build_local(config: LocalConfig) -> Any:
    try:
        from graphwright.engine.chat_model import LocalChatModel
    except ImportError as exc:
        raise LocalProviderUnavailable(
            f"the local provider needs the engine extra: pip install 'graphwright[engine]' ({exc})"
        ) from exc
    options = {k: v for k, v in (("dtype", config.dtype), ("device", config.device)) if v is not None}
    if config.quantize != "none":
        options["quantize"] = config.quantize
    return LocalChatModel(
        model=config.model,
        engine_options=options,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        top_p=config.top_p,
        top_k=config.top_k,
        seed=config.seed,
        stop=config.stop,
        auto_tool_choice=config.auto_tool_choice,
    )
