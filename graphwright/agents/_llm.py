"""`llm`: one model call with a jinja2 prompt over state channels.

Options: a system template, few-shot examples (sent as earlier turns), a
chain-of-thought variant (reason first, answer on a last `Answer:` line), and
structured output (a JSON schema) written to a channel as a dict.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from graphwright.agents._common import build_model, call_config, text_of
from graphwright.agents._configs import LLMConfig
from graphwright.agents._prompt import PromptTemplate, load_prompt
from graphwright.plugins import NodeContext

COT_INSTRUCTION = (
    "Think step by step and show your reasoning. Then write the final answer alone on the "
    "last line, starting with 'Answer:'."
)
_ANSWER = re.compile(r"(?im)^\s*(?:final\s+)?answer\s*[:：]\s*(.*)$")


def split_answer(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a chain-of-thought reply; the whole text if no `Answer:` line."""
    matches = list(_ANSWER.finditer(text))
    if not matches:
        return text.strip(), text.strip()
    last = matches[-1]
    return text[: last.start()].strip(), last.group(1).strip()


def _schema(raw: dict[str, Any] | type[BaseModel]) -> Any:
    if isinstance(raw, type):
        return raw  # a pydantic model (from Python): the reply is validated into it
    schema = dict(raw)
    schema.setdefault("title", "output")  # function-calling needs a name
    schema.setdefault("description", "the structured answer")
    return schema


def llm_node(config: LLMConfig, ctx: NodeContext) -> Callable[..., Any]:
    """Node kind factory of `llm`."""
    model = build_model(ctx, config.model)
    prompt = load_prompt(config.prompt, config.prompt_file, ctx.base_dir)
    assert prompt is not None
    system = PromptTemplate.inline(config.system) if config.system else None
    runnable = model
    if config.structured_output is not None:
        kwargs = {"method": config.structured_method} if config.structured_method else {}
        runnable = model.with_structured_output(_schema(config.structured_output), **kwargs)
    metadata = prompt.metadata()

    def variables(state: Mapping[str, Any]) -> dict[str, Any]:
        if config.inputs is None:
            return dict(state)
        missing = [c for c in config.inputs if c not in state]
        if missing:
            raise KeyError(f"llm node {ctx.node_id!r}: input channel(s) {missing} have no value")
        return {c: state[c] for c in config.inputs}

    async def node(state: Mapping[str, Any]) -> dict[str, Any]:
        vars_ = variables(state)
        text = prompt.render(vars_)
        if config.chain_of_thought:
            text = f"{text}\n\n{COT_INSTRUCTION}"
        messages: list[BaseMessage] = []
        if system is not None:
            messages.append(SystemMessage(system.render(vars_)))
        for ex in config.examples:
            messages += [HumanMessage(ex.input), AIMessage(ex.output)]
        history = list(state.get(config.messages) or []) if config.messages else []
        asked = HumanMessage(text)
        reply = await runnable.ainvoke([*messages, *history, asked], call_config(metadata))
        update: dict[str, Any] = {}
        if config.structured_output is not None:
            value = reply.model_dump() if isinstance(reply, BaseModel) else reply
            update[config.output] = value
            answer_text = str(value)
        else:
            answer_text = text_of(reply)
            if config.chain_of_thought:
                reasoning, answer = split_answer(answer_text)
                update[config.output] = answer
                if config.reasoning_output:
                    update[config.reasoning_output] = reasoning
            else:
                update[config.output] = answer_text
        if config.messages:
            update[config.messages] = [asked, AIMessage(answer_text)]
        return update

    node.model = model  # type: ignore[attr-defined]
    node.prompt = prompt  # type: ignore[attr-defined]
    return node
