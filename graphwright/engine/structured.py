"""Grammar-constrained decoding with xgrammar: JSON output, JSON-schema output and tool calls.

A small model asked for JSON breaks it often; here it cannot. Before each token the grammar
matcher computes which tokens may come next (a bitmask over the vocabulary) and every other
logit is set to -inf, so whatever is sampled keeps the output a valid prefix of the grammar; once
the grammar is complete only the end-of-sequence token is allowed.

Tool calls are written in the Hermes style that many open models are trained on:

    <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>

and constrained so that ``name`` is one of the given tools and ``arguments`` validates against that
tool's parameter schema (an ``anyOf`` over the tools). ``tool_choice``:

- ``"none"``: no tools are shown to the model and nothing is constrained;
- ``"auto"``: the model writes freely; the moment it writes ``<tool_call>`` the call itself is
  constrained (xgrammar's triggered tags), so a call, if made, is always valid;
- ``"required"`` or a named function: the output is exactly one call (of that function).
"""

from __future__ import annotations

import json
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import xgrammar as xg
from torch import Tensor

from graphwright.engine.llm import LocalEngine, RequestError
from graphwright.engine.sampling import TokenConstraint
from graphwright.engine.tokenizer import Tokenizer

CALL_BEGIN, CALL_END = "<tool_call>", "</tool_call>"
ToolChoice = Literal["none", "auto", "required"] | str  # a str other than these names one function


class GrammarConstraint:
    """A :class:`TokenConstraint` that follows one compiled grammar (one per sample)."""

    def __init__(self, compiled: xg.CompiledGrammar, vocab_size: int) -> None:
        self._matcher = xg.GrammarMatcher(compiled)
        self._bitmask = xg.allocate_token_bitmask(1, vocab_size)
        self._vocab_size = vocab_size

    def mask_logits(self, logits: Tensor) -> None:
        if self._matcher.is_terminated():
            return
        if not self._matcher.fill_next_token_bitmask(self._bitmask):
            return  # every token is allowed: nothing to mask
        mask = self._bitmask if logits.device.type == "cpu" else self._bitmask.to(logits.device)
        xg.apply_token_bitmask_inplace(logits.view(1, -1), mask, vocab_size=self._vocab_size)

    def accept_token(self, token_id: int) -> None:
        if not self._matcher.is_terminated():
            # Only a masked-in token can arrive here, so a refusal would be a bug in the masking.
            if not self._matcher.accept_token(token_id):
                raise RuntimeError(f"the grammar refused token {token_id}, which its own mask allowed")

    def is_terminated(self) -> bool:
        return bool(self._matcher.is_terminated())


def _xgrammar_vocab(tokenizer: Tokenizer, vocab_size: int) -> list[str]:
    """The byte-level vocabulary as xgrammar wants it, with special tokens blanked.

    xgrammar treats an empty token as special (never allowed by a grammar). Without this,
    ``<|im_start|>`` would be a legal piece of a JSON string, yet it decodes to nothing.
    """
    vocab = []
    for i in range(vocab_size):
        piece = tokenizer.id_to_token(i) if i < tokenizer.vocab_size else ""
        special = piece != "" and tokenizer.decode([i], skip_special_tokens=True) == ""
        vocab.append("" if special else piece)
    return vocab


class GrammarFactory:
    """Compiles grammars for one tokenizer (xgrammar caches compiled grammars by source)."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int) -> None:
        info = xg.TokenizerInfo(
            _xgrammar_vocab(tokenizer, vocab_size),
            xg.VocabType.BYTE_LEVEL,
            vocab_size=vocab_size,
            stop_token_ids=list(tokenizer.eos_token_ids),
        )
        self.vocab_size = vocab_size
        self._compiler = xg.GrammarCompiler(info, max_threads=2)

    _per_engine: ClassVar[weakref.WeakKeyDictionary[LocalEngine, GrammarFactory]] = (
        weakref.WeakKeyDictionary()
    )
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def for_engine(cls, engine: LocalEngine) -> GrammarFactory:
        """One factory per engine: building the vocabulary takes ~0.1 s, so do it once."""
        with cls._lock:
            if engine not in cls._per_engine:
                cls._per_engine[engine] = cls(engine.tokenizer, engine.model_config.vocab_size)
            return cls._per_engine[engine]

    def constraint(self, compiled: xg.CompiledGrammar) -> Callable[[], TokenConstraint]:
        """What :meth:`LocalEngine.submit` takes: a fresh matcher per sample."""
        return lambda: GrammarConstraint(compiled, self.vocab_size)

    def json_object(self) -> xg.CompiledGrammar:
        # Any JSON object, written compactly: the builtin grammar allows unbounded whitespace,
        # which a small model can fall into forever.
        return self._compiler.compile_json_schema({"type": "object"}, any_whitespace=False, strict_mode=False)

    def json_schema(
        self, schema: dict[str, Any], *, strict: bool = True, param: str = "response_format"
    ) -> Any:
        try:
            return self._compiler.compile_json_schema(
                json.dumps(schema), any_whitespace=False, strict_mode=strict
            )
        except Exception as exc:  # xgrammar raises RuntimeError/ValueError for schemas it rejects
            raise RequestError(f"invalid JSON schema: {exc}", param=param, code="invalid_schema") from exc

    def tool_calls(self, tools: Sequence[dict[str, Any]], choice: ToolChoice) -> xg.CompiledGrammar | None:
        """The grammar for ``tools`` under ``tool_choice``; None for ``"none"`` (no constraint)."""
        if choice == "none" or not tools:
            return None
        names = [function_of(t)["name"] for t in tools]
        if choice not in ("auto", "required") and choice not in names:
            raise RequestError(
                f"tool_choice names {choice!r}, which is not among the tools", param="tool_choice"
            )
        chosen = [t for t in tools if choice in ("auto", "required") or function_of(t)["name"] == choice]
        tag = {
            "type": "tag",
            "begin": CALL_BEGIN,
            "end": CALL_END,
            "content": {"type": "json_schema", "json_schema": call_schema(chosen)},
        }
        fmt: dict[str, Any] = tag
        if choice == "auto":
            fmt = {"type": "triggered_tags", "triggers": [CALL_BEGIN], "tags": [tag]}
        try:
            return self._compiler.compile_structural_tag({"type": "structural_tag", "format": fmt})
        except Exception as exc:
            raise RequestError(
                f"invalid tool parameters schema: {exc}", param="tools", code="invalid_schema"
            ) from exc


def build_constraint(
    factory: GrammarFactory,
    tools: Sequence[dict[str, Any]] | None = None,
    tool_choice: ToolChoice = "none",
    response_format: dict[str, Any] | None = None,
) -> Callable[[], TokenConstraint] | None:
    """The constraint for one chat request (OpenAI semantics), or None when output is free.

    Tools win over ``response_format``: a call is JSON already, and both cannot hold at once.
    """
    if tools and tool_choice != "none":
        grammar = factory.tool_calls(tools, tool_choice)
        return factory.constraint(grammar) if grammar is not None else None
    kind = (response_format or {}).get("type", "text")
    if kind == "json_object":
        return factory.constraint(factory.json_object())
    if kind == "json_schema":
        spec = (response_format or {}).get("json_schema") or {}
        schema = spec.get("schema")
        if not isinstance(schema, dict):
            raise RequestError(
                "response_format.json_schema.schema must be a JSON schema object", param="response_format"
            )
        return factory.constraint(factory.json_schema(schema, strict=spec.get("strict") is not False))
    if kind != "text":
        raise RequestError(f"unknown response_format type {kind!r}", param="response_format")
    return None


# -- tools in the prompt and out of the output ---------------------------------------------


def function_of(tool: dict[str, Any]) -> dict[str, Any]:
    """The ``function`` part of an OpenAI tool (accepting a bare function definition too)."""
    fn = tool.get("function", tool)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise RequestError("each tool needs a function with a name", param="tools")
    return fn


def call_schema(tools: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """JSON schema of one call: ``{"name": <tool>, "arguments": <its parameters>}``, any tool."""
    options = []
    for tool in tools:
        fn = function_of(tool)
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def tools_system_prompt(tools: Sequence[dict[str, Any]], choice: ToolChoice) -> str:
    lines = [
        "You can call functions. Their signatures, as JSON schemas:",
        *(json.dumps(function_of(t), ensure_ascii=False) for t in tools),
        "To call one, reply with "
        f'{CALL_BEGIN}{{"name": <function name>, "arguments": <arguments object>}}{CALL_END}',
    ]
    if choice == "required" or choice not in ("auto", "none"):
        lines.append("You must call a function now.")
    return "\n".join(lines)


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    # A list of content parts: keep the text ones (this engine has no vision).
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def prepare_messages(
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]] | None = None,
    choice: ToolChoice = "auto",
) -> list[dict[str, Any]]:
    """OpenAI chat messages -> plain ``{role, content}`` text messages the chat template can render.

    Assistant tool calls are written back in the same ``<tool_call>`` form the model produces, so a
    conversation reads the way it was generated; tool results become a user turn naming the tool.
    """
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> tool name, to say whose result is whose
    for m in messages:
        role, text = m.get("role", "user"), _text(m.get("content"))
        if role == "developer":
            role = "system"
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                fn = c.get("function", {})
                names[str(c.get("id"))] = str(fn.get("name", "tool"))
                args = fn.get("arguments", "{}")
                args = json.loads(args) if isinstance(args, str) and args.strip() else (args or {})
                calls.append(CALL_BEGIN + json.dumps({"name": fn.get("name"), "arguments": args}) + CALL_END)
            text = text + "".join(calls)
        elif role == "tool":
            # Chat templates without a tool role (SmolLM2's ChatML) leave small models blind
            # to a "tool" turn; as a user turn that names the tool they use the result.
            name = names.get(str(m.get("tool_call_id")), "tool")
            result = f"The {name} tool returned: {text}"
            if out and out[-1].get("_tool_results"):
                out[-1]["content"] = out[-1]["content"].rsplit("\n", 1)[0] + "\n" + result
            else:
                out.append({"role": "user", "content": result, "_tool_results": True})
            out[-1]["content"] += "\nNow answer my question using this result."
            continue
        out.append({"role": role, "content": text})
    out = [{k: v for k, v in m.items() if k != "_tool_results"} for m in out]
    if tools and choice != "none":
        prompt = tools_system_prompt(tools, choice)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + prompt}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


@dataclass
class ParsedToolCall:
    id: str
    name: str
    arguments: str  # a JSON string, as in OpenAI's API


def parse_tool_calls(text: str) -> tuple[str, list[ParsedToolCall]]:
    """Split generated text into (free text, tool calls); a truncated call stays text."""
    calls: list[ParsedToolCall] = []
    free: list[str] = []
    rest = text
    while (start := rest.find(CALL_BEGIN)) != -1:
        end = rest.find(CALL_END, start)
        if end == -1:
            break
        free.append(rest[:start])
        body = rest[start + len(CALL_BEGIN) : end]
        try:
            call = json.loads(body)
            calls.append(
                ParsedToolCall(
                    f"call_{uuid.uuid4().hex[:24]}",
                    str(call["name"]),
                    json.dumps(call.get("arguments", {}), ensure_ascii=False),
                )
            )
        except (ValueError, KeyError, TypeError):
            free.append(rest[start : end + len(CALL_END)])
        rest = rest[end + len(CALL_END) :]
    free.append(rest)
    return "".join(free).strip() if calls else text, calls


class ToolCallStreamSplitter:
    """For streaming with tools: pass free text through, hold back anything that may be a call."""

    def __init__(self) -> None:
        self._buf = ""
        self._in_call = False
        self.raw = ""

    def feed(self, delta: str) -> str:
        """Add a text delta; return the part that is certainly free text."""
        self.raw += delta
        if self._in_call:
            return ""
        self._buf += delta
        at = self._buf.find(CALL_BEGIN)
        if at != -1:
            self._in_call = True
            out, self._buf = self._buf[:at], ""
            return out
        hold = max((k for k in range(1, len(CALL_BEGIN)) if self._buf.endswith(CALL_BEGIN[:k])), default=0)
        out, self._buf = self._buf[: len(self._buf) - hold], self._buf[len(self._buf) - hold :]
        return out

    def finish(self) -> tuple[str, list[ParsedToolCall]]:
        """At the end: (text still held back, the calls made)."""
        _, calls = parse_tool_calls(self.raw)
        if calls:
            return "", calls
        held = self._buf if not self._in_call else self.raw[self.raw.find(CALL_BEGIN) :]
        return held, []
