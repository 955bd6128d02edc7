"""Tokenizer (Hugging Face ``tokenizers``), chat template and streaming detokenization.

A GGUF file carries its vocabulary and merges as metadata; building the ``tokenizers`` BPE
from them directly takes well under a second, where transformers' GGUF path spends ~18 s in
Python parsing the same vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as HFTokenizer

# llama.cpp's pre-tokenizer names -> the splits that precede byte-level BPE.
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_DIGIT_SPLIT = {"smollm", "starcoder", "refact", "codeshell", "command-r"}


def _pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _DIGIT_SPLIT:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in ("llama-bpe", "llama3"):
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_LLAMA3_REGEX), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    return byte_level  # "gpt2" and "default"


def tokenizer_json_from_gguf(fields: dict[str, Any]) -> str:
    """Build a ``tokenizer.json`` string from GGUF tokenizer metadata (byte-level BPE only)."""
    kind = fields.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"GGUF tokenizer model {kind!r} is not supported; expected byte-level BPE ('gpt2')")
    tokens: list[str] = fields["tokenizer.ggml.tokens"]
    types: list[int] = fields.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"]]
    tok = HFTokenizer(
        models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, ignore_merges=False)
    )
    tok.pre_tokenizer = _pre_tokenizer(str(fields.get("tokenizer.ggml.pre", "gpt2")))
    tok.decoder = decoders.ByteLevel()
    # GGUF token types: 3 = control, 4 = user-defined; both must never be split by BPE.
    tok.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, ty in zip(tokens, types, strict=True)
            if ty in (3, 4)
        ]
    )
    bos = fields.get("tokenizer.ggml.bos_token_id")
    if fields.get("tokenizer.ggml.add_bos_token") and bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A", special_tokens=[(tokens[bos], int(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return str(tok.to_str())


class Tokenizer:
    """Text <-> token ids, plus the model's chat template."""

    def __init__(
        self,
        tokenizer_json: str,
        chat_template: str | None = None,
        special_tokens: dict[str, str] | None = None,
        eos_token_ids: Sequence[int] = (),
    ) -> None:
        self._tok = HFTokenizer.from_str(tokenizer_json)
        self.chat_template = chat_template
        self.special_tokens = dict(special_tokens or {})
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        eos = set(eos_token_ids)
        if "eos" in self.special_tokens:
            eos_id = self._tok.token_to_id(self.special_tokens["eos"])
            if eos_id is not None:
                eos.add(eos_id)
        self.eos_token_ids = sorted(eos)
        self._template: Any = None

    @classmethod
    def from_json_file(cls, path: str) -> Tokenizer:
        with open(path) as f:
            return cls(json.dumps(json.load(f)))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        # Chat prompts come out of the template with their special tokens already written as
        # text; adding a BOS again here would double it.
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def token_to_id(self, token: str) -> int | None:
        idx = self._tok.token_to_id(token)
        return None if idx is None else int(idx)

    def id_to_token(self, idx: int) -> str:
        return str(self._tok.id_to_token(idx))

    def apply_chat_template(
        self,
        messages: Sequence[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> str:
        if self._template is None:
            self._template = _compile_template(self.chat_template or _CHATML)
        return str(
            self._template.render(
                messages=list(messages),
                add_generation_prompt=add_generation_prompt,
                tools=list(tools) if tools else None,
                bos_token=self.special_tokens.get("bos", ""),
                eos_token=self.special_tokens.get("eos", ""),
                **extra,
            )
        )


# The fallback for models that ship no template.
_CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _compile_template(source: str) -> Any:
    # The same sandboxed Jinja set-up as transformers, so that templates written for it render alike.
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(x: Any, indent: int | None = None, ensure_ascii: bool = False, sort_keys: bool = False) -> str:
        return json.dumps(x, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas, holding back what is not yet final.

    Two things are held back: an incomplete UTF-8 sequence (decoded as U+FFFD until its last byte
    arrives) and a tail that could still grow into a stop string, so that a stop string never
    reaches the client even in part.

    Each token costs a decode of a few tokens, not of the whole output (as vLLM does): the
    window starts a little before the new tokens, and the new text is what decoding the window
    adds to decoding its old part, so a decoder that treats a sequence's first token specially
    (a leading space stripped) treats both alike.
    """

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = [s for s in stop if s]
        self._ids: list[int] = []
        self._window = 0  # the decode window starts at this token
        self._read = 0  # tokens before this are in `_decoded`
        self._window_text = ""  # decode(ids[_window:_read])
        self._decoded = ""  # the text of ids[:_read]
        self.text = ""  # all final text emitted so far (a prefix of `_decoded`)
        self.stopped = False

    def add(self, token_id: int) -> str:
        """Add one token; return the new text that is now final ('' if none)."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        window = self._tokenizer.decode(self._ids[self._window :])
        if window.endswith("\ufffd") or len(window) <= len(self._window_text):
            return ""  # half a character (or nothing visible) so far: wait for more tokens
        self._decoded += window[len(self._window_text) :]
        self._window, self._read = self._read, len(self._ids)
        self._window_text = self._tokenizer.decode(self._ids[self._window : self._read])
        full = self._decoded
        for s in self._stop:
            at = full.find(s, max(0, len(self.text) - len(s) + 1))
            if at != -1:
                self.stopped = True
                return self._emit(at)
        hold = max((k for s in self._stop for k in range(1, len(s)) if full.endswith(s[:k])), default=0)
        return self._emit(len(full) - hold)

    def flush(self) -> str:
        """At the end of generation: release the held-back tail (it never became a stop string)."""
        if self.stopped:
            return ""
        self._decoded += self._tokenizer.decode(self._ids[self._window :])[len(self._window_text) :]
        return self._emit(len(self._decoded))

    def _emit(self, end: int) -> str:
        """Release ``_decoded`` up to ``end``; what was released before is a prefix of it."""
        delta = self._decoded[len(self.text) : end]
        self.text += delta
        return delta
