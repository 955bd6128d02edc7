"""Retry + response cache around any langchain chat model's core methods.

Mixed in before the model class (`class X(ReliableMixin, ChatOpenAI)`), it wraps
`_generate`/`_agenerate`/`_stream`/`_astream`, which is where every public
path (invoke, stream, batch, bind_tools, with_structured_output) ends up.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from graphwright.providers._cache import ResponseCache, cache_key
from graphwright.providers._errors import Attempt, ProviderError
from graphwright.providers._retry import Retrier
from graphwright.providers._secrets import scrub

CACHE_INFO_KEY = "graphwright_cache"  # generation_info key: "hit" | "miss"


def _mark(result: ChatResult, state: str) -> ChatResult:
    for gen in result.generations:
        gen.generation_info = {**(gen.generation_info or {}), CACHE_INFO_KEY: state}
    return result


def _as_chunk(message: BaseMessage) -> AIMessageChunk:
    """A cached whole message replayed as one stream chunk."""
    tool_chunks = []
    if isinstance(message, AIMessage):
        for i, call in enumerate(message.tool_calls):
            tool_chunks.append(
                {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": i}
            )
    return AIMessageChunk(
        content=message.content,
        tool_call_chunks=tool_chunks,  # type: ignore[arg-type]
        usage_metadata=getattr(message, "usage_metadata", None),
        response_metadata=dict(message.response_metadata),
        chunk_position="last",
    )


def _stream_broke(retrier: Retrier, exc: Exception, chunks: int) -> ProviderError:
    # Once a chunk has gone out, a retry would repeat text to the consumer: fail
    # with the one attempt instead.
    err = ProviderError(
        retrier.provider,
        retrier.model,
        [Attempt(1, getattr(exc, "status_code", None), scrub(f"{type(exc).__name__}: {exc}"), 0.0)],
        retryable=False,
        reason=f"stream broke after {chunks} chunk(s); not retried to avoid duplicate output",
    )
    err.__cause__ = exc
    return err


def _finished(chunks: list[ChatGenerationChunk]) -> bool:
    for chunk in chunks:
        if (chunk.generation_info or {}).get("finish_reason"):
            return True
        if chunk.message.response_metadata.get("finish_reason"):
            return True
    return False


class ReliableMixin:
    """Adds `_gw_retrier` (one retry layer) and `_gw_cache` (deterministic calls only).

    Concrete classes declare both as pydantic `PrivateAttr`s.
    """

    _gw_retrier: Retrier | None
    _gw_cache: ResponseCache | None
    _gw_provider: str
    # OpenAI-style streams end with a finish_reason; one that stops without it
    # was cut (the SDK ends the iteration quietly when the socket closes).
    # (annotation only: a class value here would shadow the subclasses' PrivateAttr)
    _gw_require_finish: bool

    # -- cache -----------------------------------------------------------
    def _gw_deterministic(self, kwargs: dict[str, Any]) -> bool:
        temperature = kwargs.get("temperature", getattr(self, "temperature", None))
        seed = kwargs.get("seed", getattr(self, "seed", None))
        return temperature == 0 or seed is not None

    def _gw_key(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> str | None:
        if self._gw_cache is None or not self._gw_deterministic(kwargs):
            return None
        llm_string = self._get_llm_string(stop=stop, **kwargs)  # type: ignore[attr-defined]
        return cache_key(self._gw_provider, llm_string, messages)

    def _gw_lookup(self, key: str | None) -> ChatResult | None:
        if key is None or self._gw_cache is None:
            return None
        hit = self._gw_cache.get(key)
        return _mark(hit, "hit") if hit is not None else None

    def _gw_store(self, key: str | None, result: ChatResult) -> ChatResult:
        if key is None or self._gw_cache is None:
            return result
        self._gw_cache.put(key, result)
        return _mark(result, "miss")

    # -- invoke ----------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        key = self._gw_key(messages, stop, kwargs)
        hit = self._gw_lookup(key)
        if hit is not None:
            return hit
        parent = super()._generate  # type: ignore[misc]

        def once() -> ChatResult:
            return parent(messages, stop=stop, run_manager=run_manager, **kwargs)  # type: ignore[no-any-return]

        result = self._gw_retrier.call(once) if self._gw_retrier else once()
        return self._gw_store(key, result)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        key = self._gw_key(messages, stop, kwargs)
        hit = self._gw_lookup(key)
        if hit is not None:
            return hit
        parent = super()._agenerate  # type: ignore[misc]

        async def once() -> ChatResult:
            return await parent(messages, stop=stop, run_manager=run_manager, **kwargs)  # type: ignore[no-any-return]

        result = await (self._gw_retrier.acall(once) if self._gw_retrier else once())
        return self._gw_store(key, result)

    # -- stream ----------------------------------------------------------
    def _gw_hit_chunk(self, hit: ChatResult) -> ChatGenerationChunk:
        return ChatGenerationChunk(
            message=_as_chunk(hit.generations[0].message),
            generation_info={CACHE_INFO_KEY: "hit"},
        )

    def _gw_check_finished(self, chunks: list[ChatGenerationChunk]) -> None:
        required = getattr(self, "_gw_require_finish", False)
        if required and self._gw_retrier is not None and not _finished(chunks):
            raise _stream_broke(self._gw_retrier, ConnectionError("no finish_reason"), len(chunks))

    def _gw_finish(self, key: str | None, chunks: list[ChatGenerationChunk]) -> None:
        if key is None or self._gw_cache is None or not chunks:
            return
        total = chunks[0]
        for c in chunks[1:]:
            total = total + c
        msg = total.message
        whole = AIMessage(
            content=msg.content,
            tool_calls=getattr(msg, "tool_calls", []),
            usage_metadata=getattr(msg, "usage_metadata", None),
            response_metadata=msg.response_metadata,
        )
        self._gw_cache.put(key, ChatResult(generations=[ChatGeneration(message=whole)]))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        key = self._gw_key(messages, stop, kwargs)
        hit = self._gw_lookup(key)
        if hit is not None:
            chunk = self._gw_hit_chunk(hit)
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
            return
        parent = super()._stream  # type: ignore[misc]

        def start() -> tuple[ChatGenerationChunk | None, Iterator[ChatGenerationChunk]]:
            it = parent(messages, stop=stop, run_manager=run_manager, **kwargs)
            return next(it, None), it

        first, it = self._gw_retrier.call(start) if self._gw_retrier else start()
        chunks: list[ChatGenerationChunk] = []
        if first is None:
            return
        chunks.append(first)
        if key is not None:
            first.generation_info = {**(first.generation_info or {}), CACHE_INFO_KEY: "miss"}
        yield first
        try:
            for chunk in it:
                chunks.append(chunk)
                yield chunk
        except Exception as exc:
            if self._gw_retrier is None:
                raise
            raise _stream_broke(self._gw_retrier, exc, len(chunks)) from exc
        self._gw_check_finished(chunks)
        self._gw_finish(key, chunks)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        key = self._gw_key(messages, stop, kwargs)
        hit = self._gw_lookup(key)
        if hit is not None:
            chunk = self._gw_hit_chunk(hit)
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
            return
        parent = super()._astream  # type: ignore[misc]

        async def start() -> tuple[ChatGenerationChunk | None, AsyncIterator[ChatGenerationChunk]]:
            it = parent(messages, stop=stop, run_manager=run_manager, **kwargs)
            return await anext(it, None), it

        first, it = await (self._gw_retrier.acall(start) if self._gw_retrier else start())
        chunks: list[ChatGenerationChunk] = []
        if first is None:
            return
        chunks.append(first)
        if key is not None:
            first.generation_info = {**(first.generation_info or {}), CACHE_INFO_KEY: "miss"}
        yield first
        try:
            async for chunk in it:
                chunks.append(chunk)
                yield chunk
        except Exception as exc:
            if self._gw_retrier is None:
                raise
            raise _stream_broke(self._gw_retrier, exc, len(chunks)) from exc
        self._gw_check_finished(chunks)
        self._gw_finish(key, chunks)
