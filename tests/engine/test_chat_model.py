"""LocalChatModel: langchain's chat-model interface over the in-process engine, on the real model."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from graphwright.engine.chat_model import LocalChatModel
from graphwright.engine.llm import LocalEngine


class Ticket(BaseModel):
    priority: Literal["low", "medium", "high"]
    area: Literal["login", "billing", "search"]


WEATHER_CALLS: list[str] = []


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    WEATHER_CALLS.append(city)
    return f"It is sunny and 21 C in {city}."


@pytest.fixture(scope="module")
def llm(engine: LocalEngine) -> LocalChatModel:
    return LocalChatModel(engine=engine, max_tokens=8)


def _sum(chunks: list[Any]) -> Any:
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    return total


def test_invoke_and_stream_agree_with_usage(llm: LocalChatModel) -> None:
    reply = llm.invoke("Hi")
    assert isinstance(reply, AIMessage) and isinstance(reply.content, str) and reply.content
    usage = reply.usage_metadata
    assert usage is not None and usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 8
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert reply.response_metadata["finish_reason"] in ("stop", "length")

    chunks = list(llm.stream("Hi"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks) and len(chunks) > 2
    total = _sum(chunks)
    assert total.content == reply.content
    assert (
        total.usage_metadata is not None and total.usage_metadata["output_tokens"] == usage["output_tokens"]
    )


def test_async_paths(llm: LocalChatModel) -> None:
    async def run() -> tuple[AIMessage, list[Any]]:
        reply = await llm.ainvoke("Hi")
        chunks = [c async for c in llm.astream("Hi")]
        return reply, chunks

    reply, chunks = asyncio.run(run())
    assert reply.content and _sum(chunks).content == reply.content
    assert reply.usage_metadata is not None and _sum(chunks).usage_metadata is not None


def test_stopping_a_stream_early_frees_the_request(engine: LocalEngine) -> None:
    long = LocalChatModel(engine=engine, max_tokens=4000)
    for i, _ in enumerate(long.stream("Write a very long story about a dragon.")):
        if i == 2:
            running = list(engine.scheduler.running)
            break
    wait = threading.Event()
    for _ in range(600):  # bounded wait for the engine thread to drop the cancelled sequence
        stats = engine.stats()
        if stats["running"] == 0 and stats["waiting"] == 0:
            break
        wait.wait(0.05)
    assert running and all(s.finish_reason == "cancelled" for s in running)
    assert stats["running"] == 0 and stats["free_blocks"] == stats["num_blocks"]


def test_bind_tools_gives_constrained_tool_calls(llm: LocalChatModel) -> None:
    bound = llm.bind_tools([get_weather], tool_choice="any")
    reply = bound.invoke("What is the weather in Paris?", max_tokens=40)
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    call = reply.tool_calls[0]
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str) and call["id"]
    assert reply.usage_metadata is not None

    streamed = _sum(list(bound.stream("What is the weather in Paris?", max_tokens=40)))
    assert streamed.tool_calls and streamed.tool_calls[0]["args"] == call["args"]

    # The call and its result go back into the prompt; the model then answers in text.
    answer = llm.bind_tools([get_weather], tool_choice="none").invoke(
        [
            HumanMessage("What is the weather in Paris?"),
            reply,
            ToolMessage("sunny, 21 C", tool_call_id=call["id"], name="get_weather"),
        ],
    )
    assert isinstance(answer.content, str) and answer.content and not answer.tool_calls


def test_with_structured_output(llm: LocalChatModel) -> None:
    structured = llm.with_structured_output(Ticket)
    ticket = structured.invoke("The login page crashes. File a ticket.", max_tokens=40)
    assert isinstance(ticket, Ticket)
    by_call = llm.with_structured_output(Ticket, method="function_calling")
    assert isinstance(by_call.invoke("Search is slow. File a ticket.", max_tokens=48), Ticket)

    schema = Ticket.model_json_schema()
    raw = LocalChatModel(engine=llm.engine, max_tokens=40).with_structured_output(schema, include_raw=True)
    out = raw.invoke("Billing is broken. File a ticket.")
    assert isinstance(out, dict) and out["parsing_error"] is None
    assert isinstance(out["raw"], AIMessage) and out["raw"].usage_metadata is not None
    Ticket.model_validate(out["parsed"])


def test_langgraph_prebuilt_react_agent_runs_a_tool(engine: LocalEngine) -> None:
    from langgraph.prebuilt import create_react_agent

    model = LocalChatModel(engine=engine, max_tokens=40, auto_tool_choice="call_then_answer")
    agent = create_react_agent(model, [get_weather])
    WEATHER_CALLS.clear()
    out = agent.invoke({"messages": [("user", "What is the weather in Paris?")]})
    kinds = [type(m).__name__ for m in out["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"], kinds
    call = out["messages"][1].tool_calls[0]
    assert call["name"] == "get_weather" and WEATHER_CALLS == [call["args"]["city"]]
    assert out["messages"][2].content.startswith("It is sunny")
    final = out["messages"][3]
    assert isinstance(final.content, str) and final.content and not final.tool_calls
