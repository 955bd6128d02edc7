"""Tokenizer built from GGUF metadata vs transformers' own; chat template; streaming text."""

from __future__ import annotations

from typing import Any

from graphwright.engine.tokenizer import IncrementalDetokenizer, Tokenizer

TEXTS = [
    "Hello, world!",
    "What is 12345 + 67.89?",
    "  leading spaces and\ttabs\n\nnew lines   ",
    "Héllo wörld — naïve café 🙂🚀 日本語のテキスト",
    "def f(x):\n    return x ** 2  # square",
    "<|im_start|>user\nhi<|im_end|>\n",
    "I'm sure they'll say we've done it, isn't it?",
]


def test_encoding_matches_transformers(engine: Any, hf_tokenizer: Any) -> None:
    for text in TEXTS:
        assert engine.tokenizer.encode(text) == hf_tokenizer(text, add_special_tokens=False).input_ids, text


def test_decode_round_trips(engine: Any) -> None:
    for text in TEXTS[:5]:
        assert engine.tokenizer.decode(engine.tokenizer.encode(text)) == text


def test_chat_template_comes_from_the_gguf(engine: Any, hf_tokenizer: Any) -> None:
    messages = [{"role": "user", "content": "Name a colour."}]
    ours = engine.tokenizer.apply_chat_template(messages)
    assert ours == hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours.startswith("<|im_start|>system\n")  # the template's default system prompt
    with_system = engine.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, *messages]
    )
    assert "SmolLM" not in with_system and with_system.endswith("<|im_start|>assistant\n")
    assert engine.tokenizer.eos_token_ids == [2]


def _stream(tok: Tokenizer, text: str, stop: list[str]) -> tuple[list[str], IncrementalDetokenizer]:
    detok = IncrementalDetokenizer(tok, stop)
    deltas = [detok.add(t) for t in tok.encode(text)]
    if not detok.stopped:
        deltas.append(detok.flush())
    return deltas, detok


def test_streamed_deltas_add_up_to_the_text(engine: Any) -> None:
    text = "Emoji 🙂 split over bytes, then more text."
    deltas, detok = _stream(engine.tokenizer, text, [])
    assert "".join(deltas) == text == detok.text
    assert not any("\ufffd" in d for d in deltas)  # half a UTF-8 character is never emitted


def test_stop_string_is_cut_and_never_leaks(engine: Any) -> None:
    deltas, detok = _stream(engine.tokenizer, "The answer is 42. END of the story", ["END"])
    assert detok.stopped
    assert "".join(deltas) == "The answer is 42. "
    assert not any("E" in d for d in deltas)


def test_a_partial_stop_string_is_released_at_the_end(engine: Any) -> None:
    deltas, detok = _stream(engine.tokenizer, "Ends with ST", ["STOP"])
    assert not detok.stopped
    assert "".join(deltas) == "Ends with ST"


def test_a_long_stream_decodes_a_small_window_per_token(engine: Any) -> None:
    tok = engine.tokenizer
    text = "Grüße, 世界! 🙂🚀 Tabs\tand  spaces, code `x = [1, 2]`.\n" * 60
    ids = tok.encode(text)
    assert len(ids) > 1000
    widths: list[int] = []

    class Counting:
        def decode(self, some: list[int]) -> str:
            widths.append(len(some))
            return tok.decode(some)

    detok = IncrementalDetokenizer(Counting(), [])  # type: ignore[arg-type]
    deltas = [detok.add(t) for t in ids] + [detok.flush()]
    assert "".join(deltas) == tok.decode(ids) == text
    assert not any("\ufffd" in d for d in deltas)
    assert max(widths) <= 8  # never the whole output: linear, not quadratic, in its length
