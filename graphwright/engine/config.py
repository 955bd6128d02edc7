"""Configuration of a Llama-family model and of the engine that runs it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

DType = Literal["float32", "bfloat16", "float16"]
Quantize = Literal["none", "int8", "int4"]
Kernels = Literal["auto", "triton", "torch"]



def cache_root() -> Path:
    """Where the engine keeps what it builds once (weights, kernels, compiled steps):
    ``$GRAPHWRIGHT_CACHE``, default ``~/.cache/graphwright``."""
    return Path(os.environ.get("GRAPHWRIGHT_CACHE") or Path.home() / ".cache" / "graphwright")

class RopeScaling(BaseModel):
    """RoPE frequency scaling, as in a Hugging Face ``config.json``'s ``rope_scaling``."""

    rope_type: Literal["linear", "llama3"] = "linear"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


class ModelConfig(BaseModel):
    """Shape of a Llama-family decoder; field names follow Hugging Face's ``LlamaConfig``."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_ids: list[int] = Field(default_factory=list)

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> ModelConfig:
        heads = int(cfg["num_attention_heads"])
        eos = cfg.get("eos_token_id")
        scaling = cfg.get("rope_scaling")
        if scaling:
            scaling = dict(scaling)
            scaling["rope_type"] = scaling.get("rope_type") or scaling.get("type") or "linear"
            if scaling["rope_type"] == "default":
                scaling = None
        return cls(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=cfg["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            rope_theta=cfg.get("rope_theta", 10000.0),
            rope_scaling=RopeScaling(**scaling) if scaling else None,
            rms_norm_eps=cfg.get("rms_norm_eps", 1e-5),
            max_position_embeddings=cfg.get("max_position_embeddings", 2048),
            tie_word_embeddings=cfg.get("tie_word_embeddings", False),
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_ids=[] if eos is None else ([eos] if isinstance(eos, int) else list(eos)),
        )


class EngineConfig(BaseModel):
    """How the engine runs a model: precision, KV-cache size, batching limits."""

    model: str = "smollm2"
    dtype: DType | None = None  # None: float32 on CPU (the exact mode), bfloat16 on CUDA
    quantize: Quantize = "none"
    device: str | None = None  # None: cuda when available, else cpu
    block_size: int = Field(default=16, ge=1)
    num_blocks: int | None = Field(default=None, ge=2)  # None: enough for max_num_seqs x 1024
    max_num_seqs: int = Field(default=32, ge=1)
    max_model_len: int | None = None  # None: the model's context length
    # Prompt tokens per prefill call: longer prompts are prefilled in chunks of this size, one per
    # step, between the running batch's decode steps (a long prompt stalls no one for long).
    max_prefill_tokens: int = Field(default=512, ge=16)
    prefix_caching: bool = True
    cache_dir: str | None = None  # dequantized-weight cache; None: $GRAPHWRIGHT_CACHE or ~/.cache
    # "auto": the Triton kernels when the model is on CUDA, plain torch otherwise, except that on a
    # CPU the quantized linears' decode steps run our C++ kernel (int8 activations per block of 32)
    # and decode steps' attention (float32 caches) runs our C++ kernel over the paged cache.
    # "triton" on CPU needs TRITON_INTERPRET=1 (the interpreter: for tests, slow); "torch" is the
    # reference (quantized: torch's own weight-only kernels, bfloat16 activations; attention: SDPA).
    kernels: Kernels = "auto"
    # Replay the decode step as CUDA graphs (one per batch-size bucket). CUDA + Triton kernels
    # only; ignored, with a log line, anywhere else.
    cuda_graphs: bool = False
    # Compile the torch path's decode step: on a CPU ahead of time with AOTInductor
    # (graphwright.engine.exported; about a minute the first time, ~10 s from its cache), elsewhere
    # with torch.compile (graphwright.engine.compiled).
    compile: bool = False
