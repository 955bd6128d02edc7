"""Conformance tests for model providers, and an OpenAI-compatible stub server.

Subclass `ProviderConformance` and override its `provider` fixture:

    class TestMyProvider(ProviderConformance):
        @pytest.fixture
        def provider(self) -> ProviderUnderTest:
            return ProviderUnderTest(registry, "my_provider", {"model": "m"})

Every built-in provider passes these tests (tests/providers). The provider
must answer a prompt mentioning the weather with a `get_weather` tool call
when that tool is bound, and answer a forced tool (structured output) with
arguments valid for its schema.

`OpenAIStubServer` speaks enough of `/v1/chat/completions` (JSON and SSE,
tool calls, usage) on 127.0.0.1 for the real `openai` client, and injects
faults (status codes with Retry-After, slow replies, dropped connections).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

# -- the stub server ---------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """`kind`: "status" (send `status`, maybe Retry-After), "slow" (sleep, then answer),
    "drop" (close before answering), "cut" (a streamed answer that breaks after one chunk)."""

    kind: str
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    message: str | None = None  # "{api_key}" is replaced by the request's bearer token


@dataclass
class StubReply:
    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "arguments": str}


def example_for(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """A minimal value valid for a (simple) JSON schema."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return example_for(defs[schema["$ref"].split("/")[-1]], defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return example_for(schema[key][0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: example_for(v, defs) for k, v in props.items()}
    if kind == "array":
        return [example_for(schema.get("items", {"type": "string"}), defs)]
    return {"string": "example", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def default_reply(body: dict[str, Any]) -> StubReply:
    """Echo the last user message; call a tool when one is forced or the weather is asked."""
    tools = {t["function"]["name"]: t["function"] for t in body.get("tools") or []}
    choice = body.get("tool_choice")
    forced = None
    if isinstance(choice, dict):
        forced = choice.get("function", {}).get("name")
    elif choice in ("required", "any") and len(tools) == 1:
        forced = next(iter(tools))
    text = _last_user_text(body)
    if forced is None and "weather" in text.lower() and "get_weather" in tools:
        forced = "get_weather"
    if forced is not None and forced in tools:
        args = example_for(tools[forced].get("parameters", {}))
        if forced == "get_weather":
            args = {"city": "Paris"}
        return StubReply(tool_calls=[{"name": forced, "arguments": json.dumps(args)}])
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return StubReply(json.dumps(example_for(fmt["json_schema"].get("schema", {}))))
    return StubReply(f"echo: {text}")


class OpenAIStubServer:
    """A threaded HTTP server on 127.0.0.1 speaking the chat-completions API.

    `reply(body) -> StubReply` decides answers; `fault(body, hit) -> Fault | None`
    injects failures (`hit` counts requests with the same `key(body)`, from 1).
    Every request is logged in `log[key]` as "ok", "status:<n>", "slow" or "drop".
    """

    def __init__(
        self,
        reply: Callable[[dict[str, Any]], StubReply] = default_reply,
        fault: Callable[[dict[str, Any], int], Fault | None] | None = None,
        key: Callable[[dict[str, Any]], str] = _last_user_text,
    ) -> None:
        self.reply, self.fault, self.key = reply, fault, key
        self.log: dict[str, list[str]] = {}
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                data = json.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]})
                self._send(200, data.encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                stub._serve(self, body)

            def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that timed out close early: expected here

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> OpenAIStubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _note(self, key: str, what: str) -> None:
        with self._lock:
            self.log.setdefault(key, []).append(what)

    def _serve(self, handler: Any, body: dict[str, Any]) -> None:
        key = self.key(body)
        with self._lock:
            self.requests.append(body)
            self.headers.append(dict(handler.headers))
            hit = len(self.log.get(key, [])) + 1
        fault = self.fault(body, hit) if self.fault else None
        if fault is not None and fault.kind == "drop":
            self._note(key, "drop")
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.kind == "status":
            self._note(key, f"status:{fault.status}")
            extra = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {}
            token = str(handler.headers.get("authorization") or "").removeprefix("Bearer ")
            text = (fault.message or f"injected {fault.status}").replace("{api_key}", token)
            err = {"error": {"message": text, "type": "stub", "code": None}}
            handler._send(fault.status, json.dumps(err).encode(), extra)
            return
        if fault is not None and fault.kind == "slow":
            self._note(key, "slow")
            time.sleep(fault.seconds)
        elif fault is None or fault.kind != "cut":
            self._note(key, "ok")
        reply = self.reply(body)
        try:
            if fault is not None and fault.kind == "cut":
                self._note(key, "cut")
                self._stream(handler, body, reply, cut=True)
            elif body.get("stream"):
                self._stream(handler, body, reply)
            else:
                handler._send(200, json.dumps(self._completion(body, reply)).encode())
        except OSError:
            pass  # the client gave up (a slow reply): nothing to answer

    @staticmethod
    def _usage(body: dict[str, Any], reply: StubReply) -> dict[str, int]:
        prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
        completion = len(reply.content.split()) + sum(len(c["arguments"]) // 4 for c in reply.tool_calls)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def _completion(self, body: dict[str, Any], reply: StubReply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"]}}
                for i, c in enumerate(reply.tool_calls)
            ]
        return {
            "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
            "usage": self._usage(body, reply),
        }

    def _stream(
        self, handler: Any, body: dict[str, Any], reply: StubReply, cut: bool = False
    ) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("connection", "close")
        handler.end_headers()
        handler.close_connection = True
        base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model", "stub")}

        def emit(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            handler.wfile.flush()

        emit({"role": "assistant", "content": ""})
        if cut:
            emit({"content": "partial "})
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        for word in reply.content.split(" ") if reply.content else []:
            emit({"content": word + " " if word != reply.content.split(" ")[-1] else word})
        for i, c in enumerate(reply.tool_calls):
            emit({"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}}]})
        emit({}, "tool_calls" if reply.tool_calls else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {**base, "choices": [], "usage": self._usage(body, reply)}
            handler.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
        handler.wfile.write(b"data: [DONE]\n\n")
        handler.wfile.flush()


# -- the conformance suite ---------------------------------------------------


@dataclass
class ProviderUnderTest:
    """What a conformance subclass hands over: where to build the provider, and how."""

    registry: Any  # graphwright.plugins.Registry
    name: str
    config: dict[str, Any] = field(default_factory=dict)


def _weather_tool() -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "city name"}},
                "required": ["city"],
            },
        },
    }


class ProviderConformance:
    """Behaviour every graphwright provider must have. Override the `provider` fixture."""

    @pytest.fixture
    def provider(self) -> ProviderUnderTest:
        raise NotImplementedError("override the `provider` fixture in your subclass")

    def build(self, provider: ProviderUnderTest) -> Any:
        return provider.registry.build("provider", provider.name, provider.config)

    def test_is_registered_as_provider(self, provider: ProviderUnderTest) -> None:
        entry = provider.registry.get("provider", provider.name)
        assert entry.kind == "provider"
        assert entry.component.config is not None, "providers validate settings with a model"

    def test_builds_a_base_chat_model(self, provider: ProviderUnderTest) -> None:
        from langchain_core.language_models import BaseChatModel

        assert isinstance(self.build(provider), BaseChatModel)

    def test_invoke_returns_ai_message(self, provider: ProviderUnderTest) -> None:
        from langchain_core.messages import AIMessage

        reply = self.build(provider).invoke("Say hello.")
        assert isinstance(reply, AIMessage)
        assert isinstance(reply.content, str) and reply.content

    def test_ainvoke_returns_ai_message(self, provider: ProviderUnderTest) -> None:
        from langchain_core.messages import AIMessage

        reply = asyncio.run(self.build(provider).ainvoke("Say hello."))
        assert isinstance(reply, AIMessage) and reply.content

    def test_usage_metadata_present(self, provider: ProviderUnderTest) -> None:
        usage = self.build(provider).invoke("Say hello.").usage_metadata
        assert usage is not None
        assert usage["input_tokens"] > 0 and usage["output_tokens"] >= 0
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    def test_stream_yields_chunks(self, provider: ProviderUnderTest) -> None:
        from langchain_core.messages import AIMessageChunk

        chunks = list(self.build(provider).stream("Say hello."))
        assert chunks and all(isinstance(c, AIMessageChunk) for c in chunks)
        total = chunks[0]
        for c in chunks[1:]:
            total = total + c
        assert isinstance(total.content, str) and total.content

    def test_astream_yields_chunks(self, provider: ProviderUnderTest) -> None:
        async def collect() -> list[Any]:
            return [c async for c in self.build(provider).astream("Say hello.")]

        chunks = asyncio.run(collect())
        assert chunks and "".join(str(c.content) for c in chunks)

    def test_batch(self, provider: ProviderUnderTest) -> None:
        replies = self.build(provider).batch(["Say hello.", "Say hi."])
        assert len(replies) == 2 and all(r.content for r in replies)

    def test_bind_tools_returns_tool_call(self, provider: ProviderUnderTest) -> None:
        model = self.build(provider).bind_tools([_weather_tool()])
        reply = model.invoke("What is the weather in Paris?")
        assert reply.tool_calls, "a weather question with get_weather bound must call it"
        call = reply.tool_calls[0]
        assert call["name"] == "get_weather"
        assert isinstance(call["args"], dict) and isinstance(call["args"].get("city"), str)
        assert call["id"]

    def test_tool_call_round_trip(self, provider: ProviderUnderTest) -> None:
        from langchain_core.messages import HumanMessage, ToolMessage

        model = self.build(provider).bind_tools([_weather_tool()])
        question = HumanMessage("What is the weather in Paris?")
        first = model.invoke([question])
        call = first.tool_calls[0]
        answer = ToolMessage("sunny, 21 C", tool_call_id=call["id"], name=call["name"])
        final = model.invoke([question, first, answer, HumanMessage("Thanks. Summarise.")])
        assert isinstance(final.content, str)

    def test_streamed_tool_call(self, provider: ProviderUnderTest) -> None:
        model = self.build(provider).bind_tools([_weather_tool()])
        chunks = list(model.stream("What is the weather in Paris?"))
        total = chunks[0]
        for c in chunks[1:]:
            total = total + c
        assert total.tool_calls and total.tool_calls[0]["name"] == "get_weather"

    def test_structured_output(self, provider: ProviderUnderTest) -> None:
        from pydantic import BaseModel

        class Person(BaseModel):
            name: str
            age: int

        result = self.build(provider).with_structured_output(Person).invoke(
            "Return a JSON person."
        )
        assert isinstance(result, Person)
