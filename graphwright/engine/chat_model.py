"""``LocalChatModel``: a langchain-core chat model that runs a :class:`LocalEngine` in-process.

    llm = LocalChatModel(model="smollm2")                 # or LocalChatModel(engine=engine)
    llm.invoke("Hi").content
    llm.bind_tools([get_weather], tool_choice="required").invoke("Weather in Paris?").tool_calls
    llm.with_structured_output(Person).invoke("Describe someone")

Tool calls and structured output go through the grammar-constrained decoder (see
``structured.py``), so they always parse and validate. Every message carries ``usage_metadata``.
Calls from many threads or tasks share the engine's continuously batched scheduler.
"""

from __future__ import annotations

import atexit
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call, tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from graphwright.engine.llm import LocalEngine, RequestHandle, StreamEvent
from graphwright.engine.sampling import SamplingParams
from graphwright.engine.structured import (
    GrammarFactory,
    ParsedToolCall,
    ToolCallStreamSplitter,
    build_constraint,
    parse_tool_calls,
    prepare_messages,
)

_engines: dict[tuple[str, str], LocalEngine] = {}
_engines_lock = threading.Lock()


def shared_engine(model: str, **options: Any) -> LocalEngine:
    """One engine per (model, options) in this process: loading is slow and the batch is shared."""
    key = (model, json.dumps(options, sort_keys=True, default=str))
    with _engines_lock:
        if key not in _engines:
            engine = LocalEngine.load(model, **options)
            # stop the engine thread before the interpreter tears down: a thread still inside
            # torch at exit aborts the process ("terminate called without an active exception")
            atexit.register(engine.close)
            _engines[key] = engine
        return _engines[key]


def _tool_choice(choice: Any) -> str:
    """LangChain's tool_choice spellings -> this engine's: "none" | "auto" | "required" | a name."""
    if choice is None or choice == "auto":
        return "auto"
    if choice is True or choice in ("any", "required"):
        return "required"
    if choice is False or choice == "none":
        return "none"
    if isinstance(choice, dict):
        return str((choice.get("function") or choice)["name"])
    return str(choice)


def _answered_by_tool(messages: Sequence[BaseMessage]) -> bool:
    """Whether a tool result arrived after the last user message (then it is time to answer)."""
    for m in reversed(messages):
        if isinstance(m, ToolMessage):
            return True
        if isinstance(m, HumanMessage):
            return False
    return False


class LocalChatModel(BaseChatModel):
    """A chat model served by the local engine (SmolLM2-135M by default)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    model_name: str = Field(default="smollm2", alias="model")
    engine_options: dict[str, Any] = Field(default_factory=dict)
    temperature: float = Field(default=0.0, ge=0.0)  # greedy: reproducible, and kindest to small models
    max_tokens: int | None = Field(default=512, ge=1)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = 0
    seed: int | None = None
    stop: list[str] | None = None
    # What "auto" tool choice does. "model": the model decides (a call, once begun, is constrained).
    # "call_then_answer": each user turn gets one required call, and once its result is back, a
    # text answer -- a one-step ReAct policy for models too small to decide (SmolLM2-135M never
    # starts a call on its own).
    auto_tool_choice: Literal["model", "call_then_answer"] = "model"
    _engine: LocalEngine | None = PrivateAttr(default=None)

    def __init__(self, engine: LocalEngine | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._engine = engine

    @property
    def engine(self) -> LocalEngine:
        if self._engine is None:
            self._engine = shared_engine(self.model_name, **self.engine_options)
        return self._engine

    @property
    def _llm_type(self) -> str:
        return "graphwright-local"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "local"  # the provider's registered name, for usage records
        params["ls_model_name"] = self.model_name
        return params

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature, "max_tokens": self.max_tokens}

    # -- one request ---------------------------------------------------------------------------

    def _submit(
        self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> tuple[RequestHandle, bool]:
        """Submit to the engine; return the handle and whether the output may hold tool calls."""
        tools: list[dict[str, Any]] = kwargs.get("tools") or []
        choice = _tool_choice(kwargs.get("tool_choice")) if tools else "none"
        if choice == "auto" and self.auto_tool_choice == "call_then_answer":
            choice = "none" if _answered_by_tool(messages) else "required"
        oa_messages = convert_to_openai_messages(messages)
        prompt = prepare_messages(
            oa_messages if isinstance(oa_messages, list) else [oa_messages], tools, choice
        )
        constraint = build_constraint(
            GrammarFactory.for_engine(self.engine), tools, choice, kwargs.get("response_format")
        )
        params = SamplingParams(
            max_tokens=kwargs.get("max_tokens", self.max_tokens),
            temperature=kwargs.get("temperature", self.temperature),
            top_p=kwargs.get("top_p", self.top_p),
            top_k=kwargs.get("top_k", self.top_k),
            seed=kwargs.get("seed", self.seed),
            stop=list(stop or self.stop or []),
        )
        handle = self.engine.submit(self.engine.encode_chat(prompt), params, constraint)
        return handle, bool(tools) and choice != "none"

    def _usage(self, handle: RequestHandle, completion_tokens: int) -> UsageMetadata:
        prompt = len(handle.prompt_ids)
        cached = max((s.cached_tokens for s in handle.seqs), default=0)
        return UsageMetadata(
            input_tokens=prompt,
            output_tokens=completion_tokens,
            total_tokens=prompt + completion_tokens,
            input_token_details={"cache_read": cached},
        )

    def _message(
        self, handle: RequestHandle, text: str, finish: str | None, tokens: int, tools: bool
    ) -> AIMessage:
        calls: list[ParsedToolCall] = []
        if tools:
            text, calls = parse_tool_calls(text)
        return AIMessage(
            content=text,
            tool_calls=[tool_call(name=c.name, args=json.loads(c.arguments), id=c.id) for c in calls],
            usage_metadata=self._usage(handle, tokens),
            response_metadata={
                "finish_reason": "tool_calls" if calls else finish,
                "model_name": self.model_name,
                "model_provider": "graphwright-local",
            },
        )

    def _chunks(
        self, handle: RequestHandle, ev: StreamEvent, state: dict[str, Any]
    ) -> list[ChatGenerationChunk]:
        """One engine event -> the chunks it releases (shared by the sync and async streams)."""
        splitter: ToolCallStreamSplitter | None = state["splitter"]
        out: list[ChatGenerationChunk] = []
        if ev.token_id is not None:
            state["tokens"] += 1
        text = splitter.feed(ev.text) if splitter else ev.text
        if text:
            out.append(ChatGenerationChunk(message=AIMessageChunk(content=text)))
        if ev.finish_reason is not None:
            if ev.finish_reason == "error":
                raise RuntimeError("the engine failed while running this request")
            calls: list[ParsedToolCall] = []
            if splitter:
                held, calls = splitter.finish()
                if held:
                    out.append(ChatGenerationChunk(message=AIMessageChunk(content=held)))
            last = AIMessageChunk(
                content="",
                tool_call_chunks=[
                    tool_call_chunk(name=c.name, args=c.arguments, id=c.id, index=i)
                    for i, c in enumerate(calls)
                ],
                usage_metadata=self._usage(handle, state["tokens"]),
                response_metadata={
                    "finish_reason": "tool_calls" if calls else ev.finish_reason,
                    "model_name": self.model_name,
                    "model_provider": "graphwright-local",
                },
                chunk_position="last",
            )
            out.append(ChatGenerationChunk(message=last, generation_info={"finish_reason": ev.finish_reason}))
        return out

    # -- BaseChatModel ------------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        handle, tools = self._submit(messages, stop, **kwargs)
        text, tokens, finish = "", 0, None
        try:
            for ev in handle:
                text += ev.text
                tokens += ev.token_id is not None
                finish = ev.finish_reason or finish
        finally:
            if not handle.done():
                handle.cancel()
        if finish == "error":
            raise RuntimeError("the engine failed while running this request")
        return ChatResult(
            generations=[ChatGeneration(message=self._message(handle, text, finish, tokens, tools))]
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        handle, tools = self._submit(messages, stop, **kwargs)
        text, tokens, finish = "", 0, None
        async for ev in handle:  # leaving early (task cancelled) cancels the request
            text += ev.text
            tokens += ev.token_id is not None
            finish = ev.finish_reason or finish
        if finish == "error":
            raise RuntimeError("the engine failed while running this request")
        return ChatResult(
            generations=[ChatGeneration(message=self._message(handle, text, finish, tokens, tools))]
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        handle, tools = self._submit(messages, stop, **kwargs)
        state: dict[str, Any] = {"tokens": 0, "splitter": ToolCallStreamSplitter() if tools else None}
        try:
            for ev in handle:
                for chunk in self._chunks(handle, ev, state):
                    if run_manager and chunk.text:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
        finally:
            if not handle.done():
                handle.cancel()  # the consumer stopped early: free the engine's blocks

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        handle, tools = self._submit(messages, stop, **kwargs)
        state: dict[str, Any] = {"tokens": 0, "splitter": ToolCallStreamSplitter() if tools else None}
        async for ev in handle:
            for chunk in self._chunks(handle, ev, state):
                if run_manager and chunk.text:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    # -- tools and structured output ---------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; ``tool_choice``: "auto" (default), "none", "any"/"required", or a tool name."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=_tool_choice(tool_choice), **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Constrain the output to ``schema`` (a pydantic class or a JSON schema dict) and parse it.

        ``json_schema`` (default): the output is constrained to the schema itself.
        ``function_calling``: a forced, constrained call of a tool shaped like the schema.
        ``json_mode``: any JSON object (say what to put in it in the prompt), then parsed.
        """
        is_model = isinstance(schema, type) and issubclass(schema, BaseModel)
        if method == "function_calling":
            return super().with_structured_output(schema, include_raw=include_raw, **kwargs)
        json_schema = schema.model_json_schema() if is_model else convert_to_json_schema(schema)  # type: ignore[union-attr]
        name = str(json_schema.get("title") or "response")
        response_format: dict[str, Any] = {"type": "json_object"}
        if method == "json_schema":
            response_format = {"type": "json_schema", "json_schema": {"name": name, "schema": json_schema}}
        llm = self.bind(
            response_format=response_format,
            ls_structured_output_format={"kwargs": {"method": method}, "schema": json_schema},
        )
        parser: Runnable[Any, Any] = (
            PydanticOutputParser(pydantic_object=schema) if is_model else JsonOutputParser()  # type: ignore[arg-type]
        )
        if not include_raw:
            return llm | parser
        parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        keep_raw = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parse.with_fallbacks([keep_raw], exception_key="parsing_error")
