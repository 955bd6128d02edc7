"""Serving figures: server throughput with 1/4/16 concurrent clients, and constrained-decoding cost.

1. Throughput: N concurrent clients (the official ``AsyncOpenAI``) each ask the OpenAI-compatible
   server over loopback for one chat completion of ``--tokens`` tokens (``ignore_eos``, greedy);
   aggregate completion tokens per second of wall time, and the ratio to one client.
2. Constrained decoding: the per-token cost of the xgrammar mask (fill the bitmask + apply it to
   the logits + advance the matcher), replayed over a real constrained output, and end-to-end
   tokens/s of the same request constrained vs free.

    python benchmarks/engine_serving.py [--tokens 32] [--repeats 3] [--compile]

``--compile`` serves with the torch.compile'd decode step (``graphwright serve --compile``).

Prints a table and writes benchmarks/results/engine_serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import openai
import torch

from graphwright.engine.llm import LocalEngine
from graphwright.engine.sampling import SamplingParams
from graphwright.engine.server import BackgroundServer, create_app
from graphwright.engine.structured import GrammarConstraint, GrammarFactory

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
        "mood": {"enum": ["happy", "sad", "calm"]},
    },
    "required": ["name", "age", "tags", "mood"],
}


async def _clients(base_url: str, n: int, tokens: int) -> tuple[float, int]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    t0 = time.perf_counter()
    replies = await asyncio.gather(
        *(
            client.chat.completions.create(
                model="smollm2",
                messages=[{"role": "user", "content": f"Tell me fact number {i} about space."}],
                max_tokens=tokens,
                temperature=0,
                extra_body={"ignore_eos": True},
            )
            for i in range(n)
        )
    )
    wall = time.perf_counter() - t0
    await client.close()
    return wall, sum(r.usage.completion_tokens for r in replies if r.usage)


def throughput(engine: LocalEngine, tokens: int, repeats: int) -> list[dict[str, Any]]:
    srv = BackgroundServer(create_app(engine)).start()
    rows = []
    try:
        asyncio.run(_clients(srv.base_url, 1, 4))  # warm-up
        for n in (1, 4, 16):
            runs = [asyncio.run(_clients(srv.base_url, n, tokens)) for _ in range(repeats)]
            tps = statistics.median(t / w for w, t in runs)
            rows.append(
                {
                    "clients": n,
                    "tokens_per_client": tokens,
                    "aggregate_tok_s": round(tps, 1),
                    "median_wall_s": round(statistics.median(w for w, _ in runs), 2),
                }
            )
    finally:
        srv.stop()
    base = rows[0]["aggregate_tok_s"]
    for r in rows:
        r["vs_1_client"] = round(r["aggregate_tok_s"] / base, 2)
    return rows


def constrained_cost(engine: LocalEngine, repeats: int) -> dict[str, Any]:
    grammars = GrammarFactory.for_engine(engine)
    t0 = time.perf_counter()
    compiled = grammars.json_schema(SCHEMA)
    compile_ms = (time.perf_counter() - t0) * 1e3
    ids = engine.encode_chat([{"role": "user", "content": "Describe a person as JSON."}])
    out = engine.submit(
        ids, SamplingParams(temperature=0, max_tokens=96), grammars.constraint(compiled)
    ).result()
    tokens = out.outputs[0].token_ids
    # Replay the output through a fresh matcher: what the constraint adds per generated token.
    per_token = []
    logits = torch.zeros(engine.model_config.vocab_size)
    for _ in range(repeats):
        c = GrammarConstraint(compiled, grammars.vocab_size)
        t0 = time.perf_counter()
        for t in tokens:
            logits.zero_()
            c.mask_logits(logits)
            c.accept_token(t)
        per_token.append((time.perf_counter() - t0) / len(tokens) * 1e3)

    # End to end: the same number of tokens, constrained vs free.
    def rate(constraint: Any, params: SamplingParams) -> float:
        t0 = time.perf_counter()
        r = engine.submit(ids, params, constraint).result()
        return r.completion_tokens / (time.perf_counter() - t0)

    n = len(tokens)
    con = statistics.median(
        rate(grammars.constraint(compiled), SamplingParams(temperature=0, max_tokens=96))
        for _ in range(repeats)
    )
    free = statistics.median(
        rate(None, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)) for _ in range(repeats)
    )
    return {
        "output_tokens": n,
        "schema_compile_ms": round(compile_ms, 2),
        "mask_ms_per_token": round(statistics.median(per_token), 3),
        "constrained_tok_s": round(con, 1),
        "free_tok_s": round(free, 1),
        "valid_json": json.loads(out.outputs[0].text) is not None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="the torch.compile'd decode step")
    args = ap.parse_args()
    engine = LocalEngine.load("smollm2", compile=args.compile)
    try:
        rows = throughput(engine, args.tokens, args.repeats)
        cost = constrained_cost(engine, args.repeats)
    finally:
        engine.close()
    print(f"{'clients':>8} {'tok/client':>10} {'agg tok/s':>10} {'wall s':>8} {'vs 1':>6}")
    for r in rows:
        print(
            f"{r['clients']:>8} {r['tokens_per_client']:>10} {r['aggregate_tok_s']:>10} "
            f"{r['median_wall_s']:>8} {r['vs_1_client']:>6}"
        )
    print(
        f"\nconstrained decoding ({cost['output_tokens']} tokens, JSON schema): compile "
        f"{cost['schema_compile_ms']} ms, mask {cost['mask_ms_per_token']} ms/token; "
        f"end to end {cost['constrained_tok_s']} tok/s constrained vs {cost['free_tok_s']} free"
    )
    out = Path(__file__).parent / "results" / f"engine_serving{'_compiled' if args.compile else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "compile": args.compile,
                "throughput": rows,
                "constrained": cost,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
