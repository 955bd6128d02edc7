"""An OpenAI-compatible HTTP server over a :class:`LocalEngine` (FastAPI + uvicorn).

    serve("smollm2", port=8000)   # then: OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="x")

Every request goes to the engine's scheduler, so concurrent clients share one continuously
batched model. A streaming client that goes away cancels its request, which frees its KV blocks.
Bad input is a 4xx in OpenAI's error shape, never a 500 or a hang.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from graphwright.engine import _openai_types as oa
from graphwright.engine._http import ApiError, BackgroundServer, install_error_handlers, sse
from graphwright.engine.llm import LocalEngine, RequestError, RequestHandle
from graphwright.engine.sampling import SamplingParams
from graphwright.engine.structured import (
    GrammarFactory,
    ToolCallStreamSplitter,
    build_constraint,
    parse_tool_calls,
    prepare_messages,
)

__all__ = ["BackgroundServer", "create_app", "serve"]


async def _cancel_on_disconnect(request: Request, handle: RequestHandle) -> None:
    """A non-streaming client that gives up (timeout, ctrl-C) should not keep its request running."""
    while not handle.done():
        if await request.is_disconnected():
            handle.cancel()
            return
        await asyncio.sleep(0.2)


@dataclass
class _Sample:
    """What one of the n samples produced, gathered from its stream events."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: str | None = None

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / max(1, len(self.logprobs))


@dataclass
class _Prepared:
    handle: RequestHandle
    tools: bool  # the output may hold tool calls to parse


def create_app(engine: LocalEngine, model_name: str | None = None) -> FastAPI:
    """The FastAPI app serving ``engine``; ``model_name`` is the id clients use (default: the alias)."""
    name = model_name or Path(engine.model_name).stem or engine.model_name
    accepted = {name, engine.model_name}
    grammars = GrammarFactory.for_engine(engine)  # built once, up front: the first request stays fast
    tok = engine.tokenizer
    app = FastAPI(title="graphwright engine", version="0.1.0")

    install_error_handlers(app)

    def check_model(model: str) -> None:
        if model not in accepted:
            raise ApiError(
                404,
                f"the model {model!r} does not exist; this server serves {name!r}",
                param="model",
                code="model_not_found",
            )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": name, **engine.stats()}

    @app.get("/v1/models")
    async def models() -> oa.ModelList:
        return oa.ModelList(data=[oa.ModelCard(id=name)])

    def sampling(req: oa._SamplingFields, max_tokens: int | None, **extra: Any) -> SamplingParams:
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            top_k=req.top_k,
            min_p=req.min_p,
            n=req.n,
            stop=req.stop_list,
            seed=req.seed,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
            repetition_penalty=req.repetition_penalty,
            min_tokens=req.min_tokens,
            ignore_eos=req.ignore_eos,
            **extra,
        )

    async def prepare_chat(req: oa.ChatCompletionRequest) -> _Prepared:
        check_model(req.model)
        if req.top_logprobs and not req.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs to be true", param="top_logprobs")
        tools = [t.model_dump(exclude_none=True) for t in req.tools or []]
        tc = req.tool_choice or ("auto" if tools else "none")
        choice: str = tc if isinstance(tc, str) else tc.function["name"]
        if choice != "none" and not tools:
            raise ApiError(400, "tool_choice was given without tools", param="tool_choice")
        messages = prepare_messages([m.model_dump(exclude_none=True) for m in req.messages], tools, choice)
        rf = req.response_format.model_dump(by_alias=True) if req.response_format else None
        make = await asyncio.to_thread(build_constraint, grammars, tools, choice, rf)
        try:
            ids = engine.encode_chat(messages)
        except Exception as exc:  # the chat template refused the conversation (jinja raise_exception)
            raise ApiError(
                400, f"the messages do not fit this model's chat template: {exc}", param="messages"
            ) from exc
        params = sampling(req, req.token_limit, logprobs=req.logprobs, top_logprobs=req.top_logprobs or 0)
        return _Prepared(engine.submit(ids, params, make), tools=bool(tools) and choice != "none")

    def token_logprob(tid: int, lp: float, tops: list[tuple[int, float]]) -> oa.TokenLogprob:
        def piece(i: int) -> str:
            return tok.decode([i], skip_special_tokens=False)

        return oa.TokenLogprob(
            token=piece(tid),
            logprob=lp,
            bytes=list(piece(tid).encode()),
            top_logprobs=[
                oa.TopLogprob(token=piece(i), logprob=v, bytes=list(piece(i).encode())) for i, v in tops
            ],
        )

    def usage(handle: RequestHandle, samples: Sequence[_Sample]) -> oa.Usage:
        done = sum(len(s.token_ids) for s in samples)
        cached = max((s.cached_tokens for s in handle.seqs), default=0)
        return oa.Usage(
            prompt_tokens=len(handle.prompt_ids),
            completion_tokens=done,
            total_tokens=len(handle.prompt_ids) + done,
            prompt_tokens_details=oa.PromptTokensDetails(cached_tokens=cached),
        )

    async def collect(handle: RequestHandle, request: Request) -> list[_Sample]:
        samples = [_Sample() for _ in handle.seqs]
        watcher = asyncio.create_task(_cancel_on_disconnect(request, handle))
        try:
            async for ev in handle:
                s = samples[ev.index]
                s.text += ev.text
                if ev.token_id is not None:
                    s.token_ids.append(ev.token_id)
                    s.logprobs.append(ev.logprob if ev.logprob is not None else 0.0)
                    s.top_logprobs.append(ev.top_logprobs)
                if ev.finish_reason is not None:
                    s.finish_reason = ev.finish_reason
        finally:
            watcher.cancel()
            if not handle.done():
                handle.cancel()
        if any(s.finish_reason == "cancelled" for s in samples):
            raise ApiError(499, "the client closed the request", code="client_closed_request")
        if any(s.finish_reason == "error" for s in samples):
            raise ApiError(500, "the engine failed while running this request", type_="server_error")
        return samples

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        req: oa.ChatCompletionRequest, request: Request
    ) -> oa.ChatCompletion | StreamingResponse:
        prep = await prepare_chat(req)
        rid = oa.new_id("chatcmpl")
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return sse(stream_chat(prep, rid, req, include_usage))
        samples = await collect(prep.handle, request)
        choices = []
        for i, s in enumerate(samples[: req.n]):
            msg, finish = oa.AssistantMessage(content=s.text), s.finish_reason
            if prep.tools:
                text, calls = parse_tool_calls(s.text)
                if calls:
                    msg = oa.AssistantMessage(
                        content=text or None,
                        tool_calls=[
                            oa.ToolCall(id=c.id, function=oa.FunctionCall(name=c.name, arguments=c.arguments))
                            for c in calls
                        ],
                    )
                    finish = "tool_calls"
            lps = None
            if req.logprobs:
                lps = oa.ChoiceLogprobs(
                    content=[
                        token_logprob(t, lp, top)
                        for t, lp, top in zip(s.token_ids, s.logprobs, s.top_logprobs, strict=True)
                    ]
                )
            choices.append(oa.ChatChoice(index=i, message=msg, finish_reason=finish, logprobs=lps))
        return oa.ChatCompletion(id=rid, model=name, choices=choices, usage=usage(prep.handle, samples))

    async def stream_chat(
        prep: _Prepared, rid: str, req: oa.ChatCompletionRequest, include_usage: bool
    ) -> AsyncIterator[str]:
        handle = prep.handle
        samples = [_Sample() for _ in handle.seqs]
        splitters = [ToolCallStreamSplitter() for _ in handle.seqs]

        def chunk(
            i: int, delta: oa.Delta, finish: str | None = None, lps: oa.ChoiceLogprobs | None = None
        ) -> str:
            c = oa.ChatCompletionChunk(
                id=rid,
                model=name,
                choices=[oa.ChunkChoice(index=i, delta=delta, finish_reason=finish, logprobs=lps)],
            )
            return c.model_dump_json(exclude_unset=False)

        try:
            for i in range(len(samples)):
                yield chunk(i, oa.Delta(role="assistant", content=""))
            async for ev in handle:
                s = samples[ev.index]
                if ev.token_id is not None:
                    s.token_ids.append(ev.token_id)
                text = splitters[ev.index].feed(ev.text) if prep.tools else ev.text
                lps = None
                if req.logprobs and ev.token_id is not None:
                    lps = oa.ChoiceLogprobs(
                        content=[token_logprob(ev.token_id, ev.logprob or 0.0, ev.top_logprobs)]
                    )
                if text or lps:
                    yield chunk(ev.index, oa.Delta(content=text), lps=lps)
                if ev.finish_reason is None:
                    continue
                finish: str = ev.finish_reason
                if finish == "error":
                    yield json.dumps(
                        {
                            "error": {
                                "message": "the engine failed while running this request",
                                "type": "server_error",
                                "param": None,
                                "code": None,
                            }
                        }
                    )
                    return
                if prep.tools:
                    held, calls = splitters[ev.index].finish()
                    if held:
                        yield chunk(ev.index, oa.Delta(content=held))
                    if calls:
                        finish = "tool_calls"
                        yield chunk(
                            ev.index,
                            oa.Delta(
                                tool_calls=[
                                    oa.DeltaToolCall(
                                        index=k,
                                        id=c.id,
                                        type="function",
                                        function={"name": c.name, "arguments": c.arguments},
                                    )
                                    for k, c in enumerate(calls)
                                ]
                            ),
                        )
                yield chunk(ev.index, oa.Delta(), finish)
            if include_usage:
                yield oa.ChatCompletionChunk(
                    id=rid, model=name, choices=[], usage=usage(handle, samples)
                ).model_dump_json()
        finally:
            if not handle.done():
                handle.cancel()  # the client went away mid-stream: free its KV blocks now

    @app.post("/v1/completions", response_model=None)
    async def completions(req: oa.CompletionRequest, request: Request) -> oa.Completion | StreamingResponse:
        check_model(req.model)
        if req.best_of is not None and req.stream:
            raise ApiError(400, "best_of cannot be used with stream", param="best_of")
        prompts: list[str | list[int]]
        if isinstance(req.prompt, str):
            prompts = [req.prompt]
        elif all(isinstance(p, int) for p in req.prompt):
            prompts = [[int(p) for p in req.prompt]]
        else:
            prompts = [str(p) for p in req.prompt]
        top = req.logprobs or 0
        params = sampling(
            req, req.max_tokens, logprobs=req.logprobs is not None, top_logprobs=top, best_of=req.best_of
        )
        if len(prompts) > 1 and req.stream:
            raise ApiError(400, "streaming takes one prompt at a time", param="prompt")
        handles: list[RequestHandle] = []
        try:
            for p in prompts:
                handles.append(engine.submit(p, params))
        except RequestError as exc:  # the engine names chat's field; this endpoint's is "prompt"
            for h in handles:
                h.cancel()  # the prompts that did fit must not run for nobody
            raise RequestError(
                str(exc), param="prompt" if exc.param == "messages" else exc.param, code=exc.code
            ) from exc
        rid = oa.new_id("cmpl")
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return sse(stream_completion(handles[0], rid, include_usage))
        choices: list[oa.CompletionChoice] = []
        totals = [0, 0, 0]
        for handle in handles:
            samples = await collect(handle, request)
            if len(samples) > req.n:  # best-of: keep the n most likely by mean logprob
                samples = sorted(samples, key=lambda s: s.mean_logprob, reverse=True)[: req.n]
            prefix = tok.decode(handle.prompt_ids) if req.echo else ""
            for s in samples:
                lps = None
                if req.logprobs is not None:
                    pieces = [tok.decode([t], skip_special_tokens=False) for t in s.token_ids]
                    offsets = [len(prefix) + sum(len(p) for p in pieces[:k]) for k in range(len(pieces))]
                    lps = oa.CompletionLogprobs(
                        tokens=pieces,
                        token_logprobs=s.logprobs,
                        text_offset=offsets,
                        top_logprobs=[
                            {tok.decode([i], skip_special_tokens=False): v for i, v in t}
                            for t in s.top_logprobs
                        ],
                    )
                choices.append(
                    oa.CompletionChoice(
                        index=len(choices), text=prefix + s.text, finish_reason=s.finish_reason, logprobs=lps
                    )
                )
            u = usage(handle, samples)
            totals = [
                totals[0] + u.prompt_tokens,
                totals[1] + u.completion_tokens,
                totals[2] + u.total_tokens,
            ]
        return oa.Completion(
            id=rid,
            model=name,
            choices=choices,
            usage=oa.Usage(prompt_tokens=totals[0], completion_tokens=totals[1], total_tokens=totals[2]),
        )

    async def stream_completion(handle: RequestHandle, rid: str, include_usage: bool) -> AsyncIterator[str]:
        samples = [_Sample() for _ in handle.seqs]
        try:
            async for ev in handle:
                if ev.token_id is not None:
                    samples[ev.index].token_ids.append(ev.token_id)
                if ev.text or ev.finish_reason:
                    yield oa.Completion(
                        id=rid,
                        model=name,
                        choices=[
                            oa.CompletionChoice(index=ev.index, text=ev.text, finish_reason=ev.finish_reason)
                        ],
                    ).model_dump_json()
            if include_usage:
                yield oa.Completion(
                    id=rid, model=name, choices=[], usage=usage(handle, samples)
                ).model_dump_json()
        finally:
            if not handle.done():
                handle.cancel()

    return app


def serve(
    model: str = "smollm2",
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    **engine_options: Any,
) -> None:
    """Load ``model`` and serve it until interrupted (``graphwright serve``)."""
    engine = LocalEngine.load(model, **engine_options)
    try:
        uvicorn.run(create_app(engine), host=host, port=port, log_level=log_level)
    finally:
        engine.close()
