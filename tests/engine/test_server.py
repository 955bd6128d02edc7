"""The OpenAI-compatible server, over loopback, with the official ``openai`` client and ChatOpenAI."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx
import openai
import pytest
from pydantic import BaseModel

from graphwright.engine.llm import LocalEngine
from graphwright.engine.server import BackgroundServer, create_app

HI: Any = [{"role": "user", "content": "Hi"}]
STORY: Any = [{"role": "user", "content": "Write a very long story about a dragon."}]  # runs for 400+ tokens
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}},
            "required": ["city"],
        },
    },
}


class Ticket(BaseModel):
    priority: Literal["low", "medium", "high"]
    area: Literal["login", "billing", "search"]


@pytest.fixture(scope="module")
def server(engine: LocalEngine) -> Iterator[BackgroundServer]:
    srv = BackgroundServer(create_app(engine)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: BackgroundServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def _wait_idle(engine: LocalEngine) -> dict[str, Any]:
    """Wait (bounded) until no request runs or waits; return the engine's stats then."""
    done = threading.Event()
    for _ in range(600):
        stats = engine.stats()
        if stats["running"] == 0 and stats["waiting"] == 0:
            return stats
        done.wait(0.05)
    return engine.stats()


# -- happy paths ---------------------------------------------------------------------------------


def test_models_and_health(server: BackgroundServer, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["smollm2"]
    health = httpx.get(server.base_url.removesuffix("/v1") + "/health").json()
    assert health["status"] == "ok" and health["num_blocks"] > 0 and "prefix_cache" in health


def test_chat_completion_text_usage_and_logprobs(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="smollm2", messages=HI, max_tokens=8, temperature=0, logprobs=True, top_logprobs=2
    )
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert choice.logprobs is not None and choice.logprobs.content
    tokens = choice.logprobs.content
    assert len(tokens) == r.usage.completion_tokens
    assert "".join(t.token for t in tokens).startswith(choice.message.content)
    assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.logprob - 1e-6 for t in tokens)

    # Streamed, the same greedy answer arrives in pieces, then usage, then [DONE].
    stream = client.chat.completions.create(
        model="smollm2",
        messages=HI,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason


def test_sse_wire_format_ends_with_done(server: BackgroundServer) -> None:
    body = {"model": "smollm2", "messages": HI, "max_tokens": 3, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[0][6:])["object"] == "chat.completion.chunk"


def test_n_seed_and_stop(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {
        "model": "smollm2",
        "messages": HI,
        "max_tokens": 6,
        "temperature": 1.0,
        "seed": 11,
        "n": 2,
    }
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    assert [c.index for c in a.choices] == [0, 1]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    stopped = client.chat.completions.create(
        model="smollm2", messages=HI, max_tokens=8, temperature=0, stop=["!"]
    )
    assert stopped.choices[0].finish_reason == "stop" and "!" not in (
        stopped.choices[0].message.content or ""
    )


def test_completions_endpoint(client: openai.OpenAI) -> None:
    r = client.completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=4, temperature=0, logprobs=2, echo=True
    )
    c = r.choices[0]
    assert c.text.startswith("The capital of France is") and len(c.text) > len("The capital of France is")
    assert c.logprobs is not None and len(c.logprobs.tokens or []) == 4
    assert r.usage is not None and r.usage.completion_tokens == 4
    pieces = list(
        client.completions.create(
            model="smollm2",
            prompt="The capital of France is",
            max_tokens=4,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(p.choices[0].text for p in pieces if p.choices) == c.text.removeprefix(
        "The capital of France is"
    )
    assert pieces[-1].usage is not None and pieces[-1].usage.completion_tokens == 4


def test_structured_output_with_openai_parse(client: openai.OpenAI) -> None:
    r = client.chat.completions.parse(
        model="smollm2",
        messages=[{"role": "user", "content": "The login page crashes. File a ticket."}],
        response_format=Ticket,
        max_tokens=40,
        temperature=0,
    )
    assert isinstance(r.choices[0].message.parsed, Ticket)
    obj = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "A JSON object with one key, a."}],
        response_format={"type": "json_object"},
        max_tokens=24,
        temperature=0,
    )
    if obj.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(obj.choices[0].message.content or ""), dict)
    else:
        assert (obj.choices[0].message.content or "").startswith("{")


def test_tool_calls_plain_and_streamed(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 40,
        "temperature": 0,
    }
    r = client.chat.completions.create(**kw)
    assert r.choices[0].finish_reason == "tool_calls"
    calls = r.choices[0].message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "get_weather" and calls[0].id
    assert isinstance(json.loads(calls[0].function.arguments)["city"], str)

    chunks = list(client.chat.completions.create(**kw, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(deltas) == 1 and deltas[0].function and deltas[0].function.name == "get_weather"
    assert json.loads(deltas[0].function.arguments or "") == json.loads(calls[0].function.arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_langchain_chat_openai_against_the_server(server: BackgroundServer) -> None:
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    llm = ChatOpenAI(
        model="smollm2",
        base_url=server.base_url,
        api_key=SecretStr("unused"),
        max_retries=0,
        temperature=0,
        max_completion_tokens=8,
        stream_usage=True,
    )
    reply = llm.invoke("Hi")
    assert reply.content and reply.usage_metadata and reply.usage_metadata["output_tokens"] > 0
    chunks = list(llm.stream("Hi"))
    assert "".join(str(c.content) for c in chunks) == reply.content
    call = llm.bind_tools([WEATHER], tool_choice="required").invoke("Weather in Rome?", max_tokens=40)
    assert call.tool_calls and call.tool_calls[0]["name"] == "get_weather"


def test_concurrent_clients_share_the_batch(server: BackgroundServer, engine: LocalEngine) -> None:
    async def run() -> list[Any]:
        aclient = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        prompts = ["Hi", "Name a colour.", "Say yes.", "Count to three."]
        return await asyncio.gather(
            *(
                aclient.chat.completions.create(
                    model="smollm2", messages=[{"role": "user", "content": p}], max_tokens=6, temperature=0
                )
                for p in prompts
            )
        )

    replies = asyncio.run(run())
    assert all(r.choices[0].message.content and r.usage.completion_tokens <= 6 for r in replies)
    stats = _wait_idle(engine)
    assert stats["free_blocks"] == stats["num_blocks"]


def test_client_disconnect_cancels_the_request(server: BackgroundServer, engine: LocalEngine) -> None:
    body = {"model": "smollm2", "messages": STORY, "max_tokens": 4000, "temperature": 0, "stream": True}
    seen = 0
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            seen += line.startswith("data: ")
            if seen >= 3:
                running = list(engine.scheduler.running)
                break  # leave mid-stream: closing the response drops the connection
    stats = _wait_idle(engine)
    assert running and all(s.finish_reason == "cancelled" for s in running)
    assert stats["running"] == 0 and stats["free_blocks"] == stats["num_blocks"]


def test_non_streaming_client_that_gives_up_cancels_too(
    server: BackgroundServer, engine: LocalEngine
) -> None:
    body = {"model": "smollm2", "messages": STORY, "max_tokens": 4000, "temperature": 0}

    def give_up() -> None:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.base_url + "/chat/completions", json=body, timeout=httpx.Timeout(30, read=1.0))

    with ThreadPoolExecutor(1) as pool:
        gave_up = pool.submit(give_up)
        running: list[Any] = []
        pause = threading.Event()
        for _ in range(600):  # catch the request while it runs
            if running := list(engine.scheduler.running):
                break
            pause.wait(0.02)
        gave_up.result()
    stats = _wait_idle(engine)
    assert running and all(s.finish_reason == "cancelled" for s in running)
    assert stats["running"] == 0 and stats["free_blocks"] == stats["num_blocks"]


# -- bad input: 4xx in OpenAI's error shape, never a 500 or a hang ------------------------------

CHAT = {"model": "smollm2", "messages": HI}
BAD_REQUESTS: list[tuple[str, Any, int, str | None]] = [
    ("malformed json", b'{"model": "smollm2", "messages": [', 400, None),
    ("not an object", b"[1, 2]", 400, None),
    ("missing messages", {"model": "smollm2"}, 400, "messages"),
    ("missing model", {"messages": HI}, 400, "model"),
    ("empty messages", {**CHAT, "messages": []}, 400, "messages"),
    ("bad role", {**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages"),
    ("unknown model", {**CHAT, "model": "gpt-9"}, 404, "model"),
    ("negative temperature", {**CHAT, "temperature": -0.5}, 400, "temperature"),
    ("n below one", {**CHAT, "n": 0}, 400, "n"),
    ("top_p above one", {**CHAT, "top_p": 1.5}, 400, "top_p"),
    ("max_tokens zero", {**CHAT, "max_tokens": 0}, 400, "max_tokens"),
    ("max_tokens beyond context", {**CHAT, "max_tokens": 10_000_000}, 400, "max_tokens"),
    (
        "prompt beyond context",
        {**CHAT, "messages": [{"role": "user", "content": "hello " * 9000}]},
        400,
        "messages",
    ),
    ("unknown response_format", {**CHAT, "response_format": {"type": "yaml"}}, 400, "response_format"),
    (
        "json_schema without schema",
        {**CHAT, "response_format": {"type": "json_schema"}},
        400,
        "response_format",
    ),
    (
        "invalid json schema",
        {
            **CHAT,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "no-such-type"}},
            },
        },
        400,
        "response_format",
    ),
    (
        "tool_choice names no tool",
        {**CHAT, "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        400,
        "tool_choice",
    ),
    ("tool_choice without tools", {**CHAT, "tool_choice": "required"}, 400, "tool_choice"),
    ("top_logprobs without logprobs", {**CHAT, "top_logprobs": 3}, 400, "top_logprobs"),
    ("too many stops", {**CHAT, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
]


@pytest.mark.parametrize(("case", "body", "status", "param"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_chat_requests_get_openai_errors(
    server: BackgroundServer, case: str, body: Any, status: int, param: str | None
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(
        server.base_url + "/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == status, (case, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"] and err["type"]
    assert err["param"] == param, (case, err)


def test_bad_completions_and_routes(server: BackgroundServer) -> None:
    base = server.base_url
    for body, param in [
        ({"model": "smollm2"}, "prompt"),
        ({"model": "smollm2", "prompt": []}, "prompt"),
        ({"model": "smollm2", "prompt": "x", "logprobs": 9}, "logprobs"),
        ({"model": "smollm2", "prompt": "hello " * 9000}, "prompt"),
        ({"model": "smollm2", "prompt": "x", "best_of": 2, "stream": True}, "best_of"),
    ]:
        r = httpx.post(base + "/completions", json=body, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    for method, path, status in [("GET", "/nope", 404), ("GET", "/chat/completions", 405)]:
        r = httpx.request(method, base + path, timeout=30)
        assert r.status_code == status and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_openai_client_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=HI)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="smollm2", messages=HI, max_tokens=10_000_000)  # type: ignore[arg-type]
    assert err.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2", messages=HI, temperature=-1)  # type: ignore[arg-type]
