"""`scripted`: a deterministic chat model for tests and docs.

It answers from rules (`if the last message matches X, reply Y`) and then from a
list of replies in order, may reply with tool calls (even malformed ones, to
test how agents recover) or raise HTTP-like errors (to test retries), and
records every call it received.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

from graphwright.providers._cache import ResponseCache
from graphwright.providers._reliable import ReliableMixin
from graphwright.providers._retry import Retrier
from graphwright.providers._script import (
    ScriptedConfig,
    ScriptedReply,
    ScriptedToolCall,
)


class ScriptExhausted(RuntimeError):
    """The script has no reply left for a call."""


class ScriptedHTTPError(Exception):
    """An error shaped like an SDK's HTTP error (status + headers), for retry tests."""

    def __init__(self, status: int, message: str, retry_after: float | None) -> None:
        self.status_code = status
        self.headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        super().__init__(f"HTTP {status}: {message}")


@dataclass
class ScriptedCall:
    """What the model saw on one call."""

    messages: list[BaseMessage]
    tools: list[dict[str, Any]] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)


def _tokens(text: str) -> int:
    # A word count stands in for tokens: stable, and close enough for accounting tests.
    return len(text.split())


class _ScriptedCore(BaseChatModel):
    """The script itself; `ScriptedChatModel` adds retries and the cache."""

    script: ScriptedConfig = Field(default_factory=lambda: ScriptedConfig())
    model_name: str = "scripted"
    temperature: float = 0.0

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _next: int = PrivateAttr(default=0)
    _fired: dict[int, int] = PrivateAttr(default_factory=dict)
    _calls: list[ScriptedCall] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "scripted"
        params["ls_model_name"] = self.model_name
        return params

    @property
    def calls(self) -> list[ScriptedCall]:
        """Every call received, in order (a copy)."""
        with self._lock:
            return list(self._calls)

    # -- tools -----------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    # -- the script ------------------------------------------------------
    def _pick(self, messages: list[BaseMessage]) -> ScriptedReply:
        last = messages[-1] if messages else None
        text = _text(last) if last is not None else ""
        with self._lock:
            for i, rule in enumerate(self.script.rules):
                if rule.role is not None and (last is None or last.type != rule.role):
                    continue
                if rule.times is not None and self._fired.get(i, 0) >= rule.times:
                    continue
                if re.search(rule.match, text, re.DOTALL):
                    self._fired[i] = self._fired.get(i, 0) + 1
                    return rule
            replies = self.script.replies
            if replies and (self._next < len(replies) or self.script.cycle):
                reply = replies[self._next % len(replies)]
                self._next += 1
                return ScriptedReply(content=reply) if isinstance(reply, str) else reply
        if self.script.default is not None:
            return ScriptedReply(content=self.script.default)
        raise ScriptExhausted(
            f"scripted model {self.model_name!r} has no reply left for call "
            f"{len(self._calls)} (last message: {text[:80]!r}); add replies, rules or a default"
        )

    def _respond(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        tools = list(kwargs.get("tools") or [])
        with self._lock:
            self._calls.append(ScriptedCall(list(messages), tools, dict(kwargs)))
        reply = self._pick(messages)
        if reply.error is not None:
            e = reply.error
            raise ScriptedHTTPError(e.status, e.message, e.retry_after)
        calls = list(reply.tool_calls)
        content = reply.content
        # with_structured_output binds one tool and forces it: a JSON text
        # reply then becomes that tool's call, so scripts stay readable.
        if not calls and kwargs.get("tool_choice") and len(tools) == 1:
            calls = [ScriptedToolCall(name=tools[0]["function"]["name"], args=content)]
            content = ""
        tool_calls: list[dict[str, Any]] = []
        invalid: list[dict[str, Any]] = []
        n = len(self._calls)
        for i, call in enumerate(calls):
            cid = call.id or f"call_{n}_{i}"
            if isinstance(call.args, dict):
                tool_calls.append({"name": call.name, "args": call.args, "id": cid})
                continue
            try:
                args = json.loads(call.args)
                if not isinstance(args, dict):
                    raise ValueError("arguments are not a JSON object")
                tool_calls.append({"name": call.name, "args": args, "id": cid})
            except ValueError as exc:
                invalid.append({"name": call.name, "args": call.args, "id": cid, "error": str(exc)})
        input_tokens = sum(_tokens(_text(m)) for m in messages)
        output_tokens = _tokens(content) + sum(_tokens(json.dumps(c["args"])) for c in tool_calls)
        return AIMessage(
            content=content,
            tool_calls=tool_calls,  # type: ignore[arg-type]
            invalid_tool_calls=invalid,  # type: ignore[arg-type]
            usage_metadata={
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
            response_metadata={"model_name": self.model_name, "finish_reason": "stop"},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._respond(messages, kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        whole = self._respond(messages, kwargs)
        words = re.findall(r"\S+\s*", whole.content if isinstance(whole.content, str) else "")
        for word in words:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager:
                run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk
        last = AIMessageChunk(
            content="",
            tool_call_chunks=[
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(whole.tool_calls)
            ],
            usage_metadata=whole.usage_metadata,
            response_metadata=whole.response_metadata,
            chunk_position="last",
        )
        yield ChatGenerationChunk(message=last)


class ScriptedChatModel(ReliableMixin, _ScriptedCore):
    """A `BaseChatModel` that replays a script, behind the same retry/cache layer as real ones."""

    _gw_retrier: Retrier | None = PrivateAttr(default=None)
    _gw_cache: ResponseCache | None = PrivateAttr(default=None)
    _gw_provider: str = PrivateAttr(default="scripted")


def build_scripted(config: ScriptedConfig) -> ScriptedChatModel:
    """Provider factory of `scripted`."""
    from graphwright.providers._cache import open_cache

    model = ScriptedChatModel(script=config, model_name=config.model, temperature=config.temperature)
    model._gw_retrier = Retrier(config.retry, provider="scripted", model=config.model)
    if config.cache and config.cache_path:
        model._gw_cache = open_cache(config.cache_path)
    return model
