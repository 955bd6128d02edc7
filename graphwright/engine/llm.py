"""The engine's front door: load a model, submit requests, stream or wait for their tokens.

A background thread runs the scheduler whenever there is work, so requests submitted from any
thread (a web server's event loop, an eval's worker pool) share one continuously batched model.

    engine = LocalEngine.load("smollm2")
    out = engine.chat([{"role": "user", "content": "Hi"}], SamplingParams(temperature=0, max_tokens=32))
    print(out.outputs[0].text)
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from graphwright.engine import cpu_kernels
from graphwright.engine.compiled import CompiledDecode
from graphwright.engine.config import EngineConfig
from graphwright.engine.cuda_graphs import DecodeGraphs
from graphwright.engine.exported import ExportedDecode, NotExportable
from graphwright.engine.kv_cache import BlockManager, KVCache
from graphwright.engine.model import DecodeStep, Transformer
from graphwright.engine.sampling import SamplerState, SamplingParams, TokenConstraint
from graphwright.engine.scheduler import FinishReason, Scheduler, TokenEvent
from graphwright.engine.scheduler import Sequence as Seq
from graphwright.engine.tokenizer import IncrementalDetokenizer, Tokenizer
from graphwright.engine.weights import load_weights

logger = logging.getLogger(__name__)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class RequestError(ValueError):
    """A request the engine cannot serve as asked; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.code = param, code


@dataclass
class StreamEvent:
    index: int  # which of the n samples
    token_id: int | None
    text: str
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)
    finish_reason: FinishReason | None = None


@dataclass
class Completion:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: FinishReason | None
    logprobs: list[float]
    top_logprobs: list[list[tuple[int, float]]]

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / max(1, len(self.logprobs))


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[Completion]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens served from the prefix cache


class RequestHandle:
    """One submitted request: iterate it (sync or async) for events, or wait for :meth:`result`."""

    def __init__(
        self, prompt_ids: list[int], params: SamplingParams, tokenizer: Tokenizer, num_seqs: int
    ) -> None:
        self.prompt_ids, self.params, self._tokenizer = prompt_ids, params, tokenizer
        self.seqs: list[Seq] = []
        self._index: dict[int, int] = {}
        self._open = num_seqs
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._q: queue.Queue[StreamEvent | None] = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._aq: asyncio.Queue[StreamEvent | None] | None = None

    def _on_event(self, ev: TokenEvent) -> None:  # called on the engine thread
        out = StreamEvent(
            self._index[ev.seq_id], ev.token_id, ev.text, ev.logprob, ev.top_logprobs, ev.finish_reason
        )
        items: list[StreamEvent | None] = [out]
        if ev.finish_reason is not None:
            self._open -= 1
            if self._open == 0:
                items.append(None)
                self._done.set()
        with self._lock:
            for item in items:
                if self._loop is not None and self._aq is not None:
                    try:
                        self._loop.call_soon_threadsafe(self._aq.put_nowait, item)
                    except RuntimeError:  # the consumer's event loop is closed: nobody listens
                        pass
                else:
                    self._q.put(item)

    def __iter__(self) -> Iterator[StreamEvent]:
        while (item := self._q.get()) is not None:
            yield item

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        with self._lock:
            self._loop, self._aq = asyncio.get_running_loop(), asyncio.Queue()
            while not self._q.empty():
                self._aq.put_nowait(self._q.get_nowait())
        try:
            while (item := await self._aq.get()) is not None:
                yield item
        finally:
            if not self._done.is_set():
                self.cancel()  # the consumer went away (client disconnected): free the blocks

    def cancel(self) -> None:
        for s in self.seqs:
            s.cancelled = True

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> RequestOutput:
        if not self._done.wait(timeout):
            raise TimeoutError("request did not finish in time")
        comps = [
            Completion(
                i,
                s.detok.text,
                list(s.output_ids),
                s.finish_reason,
                list(s.output_logprobs),
                list(s.output_top),
            )
            for i, s in enumerate(self.seqs)
        ]
        if len(comps) > self.params.n:  # best-of: keep the n most likely by mean logprob
            comps = sorted(comps, key=lambda c: c.mean_logprob, reverse=True)[: self.params.n]
            for i, c in enumerate(comps):
                c.index = i
        if any(s.finish_reason == "error" for s in self.seqs):
            raise RuntimeError("the engine failed while running this request (see the log)")
        cached = max(s.cached_tokens for s in self.seqs)
        return RequestOutput(
            prompt_token_ids=self.prompt_ids,
            outputs=comps,
            prompt_tokens=len(self.prompt_ids),
            completion_tokens=sum(len(s.output_ids) for s in self.seqs),
            cached_tokens=cached,
        )


class LocalEngine:
    def __init__(self, config: EngineConfig | None = None) -> None:
        cfg = config or EngineConfig()
        t0 = time.perf_counter()
        device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = _DTYPES[cfg.dtype or ("bfloat16" if device.type == "cuda" else "float32")]
        weights = load_weights(cfg.model, cfg.cache_dir)
        tokenizer = Tokenizer(
            weights.tokenizer_json,
            weights.chat_template,
            weights.special_tokens,
            weights.config.eos_token_ids,
        )
        model = Transformer.from_state_dict(
            weights.config, weights.state_dict, dtype, device, cfg.quantize, cpu_kernel=cfg.kernels != "torch"
        )
        del weights
        self._setup(cfg, model, tokenizer, t0)

    @classmethod
    def from_model(
        cls, model: Transformer, tokenizer: Tokenizer, config: EngineConfig | None = None
    ) -> LocalEngine:
        """An engine around a model built elsewhere (e.g. random weights, for tests and benchmarks).

        The model's own device, dtype and weights are used: ``config.model``, ``dtype``, ``device``
        and ``quantize`` are not read; the KV cache, batching and kernel options are.
        """
        engine = cls.__new__(cls)
        engine._setup(config or EngineConfig(), model, tokenizer, time.perf_counter())
        return engine

    def _setup(self, cfg: EngineConfig, model: Transformer, tokenizer: Tokenizer, t0: float) -> None:
        self.config = cfg
        self.device, self.dtype = model.embed_tokens.weight.device, model.embed_tokens.weight.dtype
        self.model_name = cfg.model
        self.model_config = mc = model.config
        self.tokenizer = tokenizer
        self.model = model.set_kernels(self._use_kernels(cfg))
        self.model.set_cpu_attention(self._use_cpu_attention(cfg))
        self.max_model_len = min(cfg.max_model_len or mc.max_position_embeddings, mc.max_position_embeddings)
        num_blocks = cfg.num_blocks or -(-max(self.max_model_len, 16384) // cfg.block_size)
        self.max_model_len = min(self.max_model_len, num_blocks * cfg.block_size)
        self.blocks = BlockManager(num_blocks, cfg.block_size, cfg.prefix_caching)
        graphed = cfg.cuda_graphs and self.device.type == "cuda" and self.model.use_kernels
        if cfg.cuda_graphs and not graphed:
            logger.warning(
                "cuda_graphs=True ignored: CUDA graphs need device cuda with the Triton kernels "
                "(here: device %s, kernels %s)",
                self.device.type,
                "triton" if self.model.use_kernels else "torch",
            )
        kv = KVCache(
            mc.num_hidden_layers,
            num_blocks,
            cfg.block_size,
            mc.num_key_value_heads,
            mc.head_dim,
            self.dtype,
            self.device,
        )
        decode_step: DecodeStep | None = None
        if graphed:
            max_blocks = -(-self.max_model_len // cfg.block_size)
            decode_step = DecodeGraphs(
                self.model, kv.k, kv.v, cfg.block_size, cfg.max_num_seqs, max_blocks, kv.scratch_block
            )
        elif cfg.compile and self.model.use_kernels:
            logger.warning("compile=True ignored: it compiles the torch path, and the Triton kernels are on")
        elif cfg.compile:
            decode_step = self._compiled_decode(kv)
        self.scheduler = Scheduler(
            self.model,
            self.tokenizer,
            kv,
            self.blocks,
            cfg.max_num_seqs,
            self.max_model_len,
            self.device,
            decode_step,
            cfg.max_prefill_tokens,
        )
        self.load_seconds = time.perf_counter() - t0
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _compiled_decode(self, kv: KVCache) -> DecodeStep:
        """On a CPU the step exported and compiled ahead of time; elsewhere, or where Inductor
        would need constants of its own (torch's int4 kernel), torch.compile."""
        if self.device.type == "cpu":
            try:
                return ExportedDecode(self.model, kv.k, kv.v, kv.scratch_slot)
            except NotExportable as exc:
                logger.warning("%s; compiling the decode step with torch.compile instead", exc)
        return CompiledDecode(self.model, kv.k, kv.v, kv.scratch_slot)

    def _use_cpu_attention(self, cfg: EngineConfig) -> bool:
        """Decode attention in C++ with ``kernels="auto"`` on a CPU, float32 caches."""
        if cfg.kernels != "auto" or self.device.type != "cpu" or self.dtype != torch.float32:
            return False
        return cpu_kernels.available()

    def _use_kernels(self, cfg: EngineConfig) -> bool:
        """Resolve ``cfg.kernels``: "auto" is Triton on CUDA when triton is installed, else torch."""
        if cfg.kernels == "torch":
            return False
        if cfg.kernels == "auto":
            if self.device.type == "cuda" and importlib.util.find_spec("triton") is None:
                logger.warning("kernels='auto': triton is not installed, running the torch path on CUDA")
                return False
            return self.device.type == "cuda"
        if importlib.util.find_spec("triton") is None:
            raise ValueError("kernels='triton' needs the triton package (pip install 'graphwright[gpu]')")
        if self.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(
                f"kernels='triton' needs CUDA tensors (device here: {self.device.type}), or "
                "TRITON_INTERPRET=1 set before the kernels are imported (the slow Triton interpreter)"
            )
        return True

    @classmethod
    def load(cls, model: str = "smollm2", **options: Any) -> LocalEngine:
        return cls(EngineConfig(model=model, **options))

    # -- requests -------------------------------------------------------------------------

    def encode_chat(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None
    ) -> list[int]:
        return self.tokenizer.encode(
            self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tools=tools)
        )

    def submit(
        self,
        prompt: str | list[int],
        params: SamplingParams | None = None,
        constraint: Callable[[], TokenConstraint] | None = None,
    ) -> RequestHandle:
        """Queue a request; ``constraint`` makes one fresh constraint per sample."""
        params = params or SamplingParams()
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        max_tokens = self._check(ids, params)
        num = params.best_of or params.n
        handle = RequestHandle(ids, params, self.tokenizer, num)
        for i in range(num):
            seq = Seq(
                prompt_ids=ids,
                params=params,
                sampler=SamplerState(
                    params,
                    self.model_config.vocab_size,
                    ids,
                    self.device,
                    seed_offset=i,
                    end_ids=sorted(set(self.tokenizer.eos_token_ids) | set(params.stop_token_ids)),
                ),
                detok=IncrementalDetokenizer(self.tokenizer, params.stop),
                max_tokens=max_tokens,
                on_event=handle._on_event,
                constraint=constraint() if constraint else None,
            )
            handle._index[seq.seq_id] = i
            handle.seqs.append(seq)
        for seq in handle.seqs:
            self.scheduler.add(seq)
        self._kick()
        return handle

    def generate(
        self, prompt: str | list[int], params: SamplingParams | None = None, **kw: Any
    ) -> RequestOutput:
        return self.submit(prompt, params, **kw).result()

    def chat(
        self, messages: Sequence[dict[str, Any]], params: SamplingParams | None = None, **kw: Any
    ) -> RequestOutput:
        return self.submit(self.encode_chat(messages), params, **kw).result()

    def _check(self, ids: list[int], params: SamplingParams) -> int:
        if not ids:
            raise RequestError("the prompt is empty", param="prompt")
        if any(t < 0 or t >= self.model_config.vocab_size for t in ids):
            raise RequestError(
                f"prompt token ids must be in [0, {self.model_config.vocab_size})", param="prompt"
            )
        room = self.max_model_len - len(ids)
        if room < 1:
            raise RequestError(
                f"the prompt has {len(ids)} tokens; this model's context is {self.max_model_len} tokens",
                param="messages",
                code="context_length_exceeded",
            )
        if params.max_tokens is not None and params.max_tokens > room:
            raise RequestError(
                f"max_tokens={params.max_tokens} is too large: the prompt has {len(ids)} tokens and the "
                f"context is {self.max_model_len}, so at most {room} new tokens fit",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return params.max_tokens or room

    # -- the loop -------------------------------------------------------------------------

    def _kick(self) -> None:
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="graphwright-engine", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self.scheduler.has_work():
                    self._wake.wait()
                if self._closed:
                    return
            try:
                self.scheduler.step()
            except Exception as exc:  # never leave callers waiting on a dead loop
                logger.exception("engine step failed")
                self._error = exc
                self.scheduler.fail_all()

    def stats(self) -> dict[str, Any]:
        s = self.blocks.stats
        return {
            "running": sum(1 for s in self.scheduler.running if s.finish_reason is None),
            "waiting": len(self.scheduler.waiting),
            "free_blocks": self.blocks.num_free,
            "num_blocks": self.blocks.num_blocks,
            "preemptions": self.scheduler.num_preemptions,
            "prefix_cache": {
                "queries": s.queries,
                "query_tokens": s.query_tokens,
                "hit_tokens": s.hit_tokens,
                "hit_blocks": s.hit_blocks,
                "hit_rate": s.hit_rate,
            },
        }

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
