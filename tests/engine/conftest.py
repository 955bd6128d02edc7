"""Shared fixtures: one engine and one transformers model per test session (both load slowly)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The Triton kernels run on the interpreter where there is no GPU. The variable is read when a
# kernel is decorated, so it is set here, before any test module imports a kernel module.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

CHAT_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "List three prime numbers.",
    "How do I reverse a list in Python?",
    "What is 12 times 7?",
    "Give me a tip for staying focused.",
    "Translate 'good morning' into Spanish.",
]


@pytest.fixture(scope="session")
def chat_prompts() -> list[str]:
    return list(CHAT_PROMPTS)


@pytest.fixture(scope="session")
def weights_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-private dequantized-weight cache: the first load is cold, the rest warm."""
    return tmp_path_factory.mktemp("gw-weights")


@pytest.fixture(scope="session")
def engine(weights_cache: Path) -> Iterator[Any]:
    from graphwright.engine.llm import LocalEngine

    eng = LocalEngine.load("smollm2", cache_dir=str(weights_cache), dtype="float32")
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def hf_model() -> Any:
    """transformers' own Llama, loading the same GGUF (the reference for exactness)."""
    import torch
    from transformers import AutoModelForCausalLM

    from graphwright.engine.weights import resolve_model

    path = resolve_model("smollm2")
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="session")
def hf_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from graphwright.engine.weights import resolve_model

    path = resolve_model("smollm2")
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
