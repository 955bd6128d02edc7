"""The plain-torch model against transformers on the same GGUF weights."""

from __future__ import annotations

from typing import Any

import torch

from graphwright.engine.sampling import SamplingParams

NEW_TOKENS = 48


def _chat_ids(engine: Any, prompt: str) -> list[int]:
    return engine.encode_chat([{"role": "user", "content": prompt}])


def test_first_step_logits_match_transformers(engine: Any, hf_model: Any, chat_prompts: list[str]) -> None:
    for prompt in chat_prompts[:3]:
        ids = torch.tensor([_chat_ids(engine, prompt)])
        with torch.inference_mode():
            ours = engine.model(ids, torch.arange(ids.shape[1])[None])
            theirs = hf_model(ids).logits
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max().item() < 1e-3


def test_greedy_tokens_equal_transformers(engine: Any, hf_model: Any, chat_prompts: list[str]) -> None:
    # min_tokens masks eos exactly as transformers' min_new_tokens does, so both run 48 tokens.
    greedy = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS)
    for prompt in chat_prompts:
        ids = _chat_ids(engine, prompt)
        ours = engine.generate(ids, greedy).outputs[0].token_ids
        with torch.inference_mode():
            out = hf_model.generate(
                torch.tensor([ids]),
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=False,
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            )
        theirs = out[0, len(ids) :].tolist()
        first_diff = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b), None)
        assert ours == theirs, f"prompt {prompt!r}: first difference at token {first_diff}"


def test_bf16_int8_and_int4_stay_close_to_the_fp32_reference(
    engine: Any, weights_cache: Any, chat_prompts: list[str]
) -> None:
    # Near ties make exact tokens a float32-only promise; the other modes are held to the logits.
    from graphwright.engine.model import Transformer
    from graphwright.engine.weights import load_weights

    w = load_weights("smollm2", weights_cache)
    variants = {
        "bf16": Transformer.from_state_dict(w.config, w.state_dict, dtype=torch.bfloat16),
        "int8": Transformer.from_state_dict(w.config, w.state_dict, quantize="int8"),
        "int4": Transformer.from_state_dict(w.config, w.state_dict, quantize="int4"),
    }
    for prompt in chat_prompts[:3]:
        ids = torch.tensor([_chat_ids(engine, prompt)])
        pos = torch.arange(ids.shape[1])[None]
        with torch.inference_mode():
            ref = engine.model(ids, pos)[0, -1]
            for name, model in variants.items():
                got = model(ids, pos)[0, -1]
                assert got.dtype == torch.float32
                assert torch.cosine_similarity(got, ref, dim=0).item() > 0.995, name
                # The same next token, or the other side of a near tie in float32 (prompt 2's top
                # two are 0.11 apart, and int4's int8 activations pick the second).
                assert ref.max() - ref[got.argmax()] < 0.25, name
                assert (got - ref).abs().max().item() < 3.0, name
