"""Loading: GGUF (dequantized, cached), Hugging Face folders, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from graphwright.engine.weights import ModelLoadError, _unpermute, load_weights, resolve_model


def test_gguf_config_and_tensors(weights_cache: Path) -> None:
    w = load_weights("smollm2", weights_cache)
    c = w.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads) == (
        30,
        576,
        9,
        3,
    )
    assert c.rope_theta == 100000.0 and c.tie_word_embeddings and c.vocab_size == 49152
    # q|k|v and gate|up come stacked (576 + 2 * 192 rows; 2 * 1536 rows).
    assert w.state_dict["model.layers.0.self_attn.qkv_proj.weight"].shape == (960, 576)
    assert w.state_dict["model.layers.0.mlp.gate_up_proj.weight"].shape == (3072, 576)
    assert w.state_dict["model.embed_tokens.weight"].dtype == torch.float32
    assert "lm_head.weight" not in w.state_dict  # tied to the embedding
    assert w.chat_template and "<|im_start|>" in w.chat_template


def test_warm_load_reads_the_cache_and_gives_the_same_weights(weights_cache: Path) -> None:
    first = load_weights("smollm2", weights_cache)
    warm = load_weights("smollm2", weights_cache)
    assert warm.from_cache
    name = "model.layers.3.self_attn.qkv_proj.weight"
    assert torch.equal(first.state_dict[name], warm.state_dict[name])
    assert warm.config == first.config and warm.tokenizer_json == first.tokenizer_json


def _llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    # What llama.cpp's convert_hf_to_gguf.py does to q and k (LlamaModel.permute).
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_unpermute_inverts_the_gguf_converter() -> None:
    w = np.random.default_rng(0).standard_normal((3 * 8, 5)).astype(np.float32)
    assert np.array_equal(_unpermute(_llama_cpp_permute(w, 3), 3), w)
    assert not np.array_equal(_llama_cpp_permute(w, 3), w)


def test_missing_model_names_the_path() -> None:
    with pytest.raises(ModelLoadError, match=r"nope\.gguf"):
        resolve_model("/tmp/definitely/nope.gguf")
    with pytest.raises(ModelLoadError, match="registered alias"):
        resolve_model("no-such-alias")


def test_not_a_gguf_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(ModelLoadError, match=r"model\.gguf.*not a GGUF file"):
        load_weights(str(bad), tmp_path / "cache")


def test_truncated_gguf(tmp_path: Path) -> None:
    real = resolve_model("smollm2")
    cut = tmp_path / "cut.gguf"
    with real.open("rb") as f:
        cut.write_bytes(f.read(2_000_000))
    with pytest.raises(ModelLoadError, match=r"cut\.gguf.*corrupt or truncated"):
        load_weights(str(cut), tmp_path / "cache")


def test_hugging_face_folder_loads_the_same_model(tmp_path: Path, engine: Any, weights_cache: Path) -> None:
    from safetensors.torch import save_file

    from graphwright.engine.llm import LocalEngine
    from graphwright.engine.sampling import SamplingParams

    w = load_weights("smollm2", weights_cache)
    c = w.config
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "vocab_size": c.vocab_size,
                "hidden_size": c.hidden_size,
                "intermediate_size": c.intermediate_size,
                "num_hidden_layers": c.num_hidden_layers,
                "num_attention_heads": c.num_attention_heads,
                "num_key_value_heads": c.num_key_value_heads,
                "rope_theta": c.rope_theta,
                "rms_norm_eps": c.rms_norm_eps,
                "tie_word_embeddings": True,
                "max_position_embeddings": 2048,
                "bos_token_id": 1,
                "eos_token_id": 2,
            }
        )
    )
    save_file(w.state_dict, str(tmp_path / "model.safetensors"))
    (tmp_path / "tokenizer.json").write_text(w.tokenizer_json)
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": w.chat_template, "eos_token": "<|im_end|>"})
    )
    folder = LocalEngine.load(str(tmp_path), num_blocks=64)
    try:
        params = SamplingParams(temperature=0, max_tokens=12)
        prompt = engine.encode_chat([{"role": "user", "content": "Name a fruit."}])
        assert folder.max_model_len == 1024  # min(config's 2048, 64 blocks x 16)
        assert (
            folder.generate(prompt, params).outputs[0].token_ids
            == engine.generate(prompt, params).outputs[0].token_ids
        )
    finally:
        folder.close()


def test_hugging_face_folder_missing_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json.*safetensors"):
        load_weights(str(tmp_path))


def test_fast_dequantize_is_bit_identical_to_gguf_py() -> None:
    from gguf.quants import dequantize as reference

    from graphwright.engine._gguf import GGUFFile, GGUFTensor, dequantize

    gguf = GGUFFile(resolve_model("smollm2"))
    seen = set()
    for t in gguf.tensors:
        if t.qtype in seen:
            continue
        seen.add(t.qtype)
        part = GGUFTensor(t.name, t.qtype, (min(64, t.shape[0]), *t.shape[1:]), t.data[:64])
        ours = dequantize(part)
        assert ours.shape == part.shape and ours.dtype == np.float32
        assert np.array_equal(ours, np.asarray(reference(part.data, part.qtype)).reshape(part.shape)), (
            t.qtype.name
        )
    assert {q.name for q in seen} == {"Q8_0", "Q4_1", "F32"}
