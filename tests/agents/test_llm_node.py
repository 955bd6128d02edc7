"""The `llm` node kind: templates, few-shot, chain of thought, structured output."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from graphwright.agents import LLMConfig, PromptTemplate, llm_node, split_answer
from graphwright.plugins import NodeContext, Registry
from graphwright.providers import UsageRecorder
from graphwright.testing.provider_suite import OpenAIStubServer


def make(registry: Registry, base: Path | None = None, **with_: Any) -> Any:
    return llm_node(LLMConfig.model_validate(with_), NodeContext("ask", registry, base, {}))


def run(node: Any, state: dict[str, Any], callbacks: list[Any] | None = None) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        if not callbacks:
            return await node(state)
        # run inside a runnable so the node sees a config, as it does in a graph
        from langchain_core.runnables import RunnableLambda

        return await RunnableLambda(node).ainvoke(state, {"callbacks": callbacks})

    return asyncio.run(go())


def test_prompt_file_with_version_goes_into_the_record(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "summarise.j2").write_text("{# version: 3 #}\nSummarise in {{ n }} words: {{ text }}")
    node = make(registry, tmp_path, model={"provider": "scripted", "default": "short"},
                prompt_file="summarise.j2", inputs=["text", "n"], output="summary")
    rec = UsageRecorder()
    out = run(node, {"text": "a long story", "n": 3, "other": 1}, [rec])
    assert out == {"summary": "short"}
    assert node.model.calls[0].messages[-1].content == "Summarise in 3 words: a long story"
    template = PromptTemplate.from_file(tmp_path / "summarise.j2")
    assert template.version == "3"
    assert rec.calls[0].prompt_version == "3"
    assert rec.calls[0].prompt_hash == template.sha256[:16]


def test_inputs_limit_what_the_template_sees(registry: Registry) -> None:
    node = make(registry, model={"provider": "scripted", "default": "x"},
                prompt="{{ secret }}", inputs=["question"])
    with pytest.raises(Exception, match="secret"):
        run(node, {"question": "q", "secret": "hidden"})
    missing = make(registry, model={"provider": "scripted", "default": "x"},
                   prompt="{{ question }}", inputs=["question"])
    with pytest.raises(KeyError, match="question"):
        run(missing, {})


def test_few_shot_examples_are_earlier_turns(registry: Registry) -> None:
    node = make(registry, model={"provider": "scripted", "default": "negative"},
                system="Classify sentiment.", prompt="{{ text }}", output="label",
                examples=[{"input": "I love it", "output": "positive"},
                          {"input": "Meh", "output": "neutral"}])
    out = run(node, {"text": "I hate it"})
    sent = node.model.calls[0].messages
    assert [type(m) for m in sent] == [SystemMessage, HumanMessage, AIMessage, HumanMessage,
                                       AIMessage, HumanMessage]
    assert [m.content for m in sent[1:]] == ["I love it", "positive", "Meh", "neutral", "I hate it"]
    assert out == {"label": "negative"}


def test_chain_of_thought_splits_reasoning_from_answer(registry: Registry) -> None:
    node = make(registry, prompt="{{ q }}", output="answer", reasoning_output="why",
                chain_of_thought=True,
                model={"provider": "scripted",
                       "default": "17*20 is 340.\n17*3 is 51.\n340+51 = 391.\nAnswer: 391"})
    out = run(node, {"q": "17*23?"})
    assert out["answer"] == "391" and out["why"].endswith("340+51 = 391.")
    assert "step by step" in node.model.calls[0].messages[-1].content
    assert split_answer("no marker") == ("no marker", "no marker")


SCHEMA = {"title": "Person", "type": "object",
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


def test_structured_output_into_a_channel_scripted(registry: Registry) -> None:
    node = make(registry, prompt="Who? {{ text }}", output="person", structured_output=SCHEMA,
                model={"provider": "scripted", "default": '{"name": "Ada", "age": 36}'})
    assert run(node, {"text": "Ada, 36"}) == {"person": {"name": "Ada", "age": 36}}


def test_structured_output_as_a_pydantic_model_from_python(registry: Registry) -> None:
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    node = make(registry, prompt="Who?", output="person", structured_output=Person,
                model={"provider": "scripted", "default": '{"name": "Ada", "age": 36}'})
    assert run(node, {}) == {"person": {"name": "Ada", "age": 36}}


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_structured_output_through_openai(registry: Registry, method: str) -> None:
    with OpenAIStubServer() as server:
        node = make(registry, prompt="Who? {{ text }}", output="person", structured_output=SCHEMA,
                    structured_method=method,
                    model={"provider": "openai", "base_url": server.url, "api_key": "k"})
        out = run(node, {"text": "Ada"})
    assert out == {"person": {"name": "example", "age": 1}}


def test_messages_channel_gets_the_turn(registry: Registry) -> None:
    node = make(registry, prompt="{{ q }}", output="a", messages="messages",
                model={"provider": "scripted", "default": "hello"})
    out = run(node, {"q": "hi", "messages": [HumanMessage("earlier")]})
    assert [m.content for m in out["messages"]] == ["hi", "hello"]
    assert [m.content for m in node.model.calls[0].messages] == ["earlier", "hi"]


def test_config_needs_exactly_one_prompt() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        LLMConfig.model_validate({"model": "scripted"})
    with pytest.raises(ValueError, match="do not combine"):
        LLMConfig.model_validate({"model": "scripted", "prompt": "x", "chain_of_thought": True,
                                  "structured_output": SCHEMA})
