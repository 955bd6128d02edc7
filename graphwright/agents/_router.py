"""`router`: rules or a model pick the next node from named choices; the pick is validated.

The choice is written to a channel (read by `when:` edges); with `goto: true` it is
also returned as a langgraph `Command(goto=...)`, for graphs built in Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from graphwright.agents._common import build_model, call_config, text_of
from graphwright.agents._configs import RouterConfig
from graphwright.agents._prompt import load_prompt
from graphwright.plugins import NodeContext

DEFAULT_PROMPT = """Choose the single best next step for the input below.
Options:
{% for name, desc in choices.items() %}- {{ name }}{% if desc %}: {{ desc }}{% endif %}
{% endfor %}
Input: {{ input }}

Reply with the option name only."""


class RouteError(Exception):
    """No valid choice could be made."""


def parse_choice(text: str, choices: list[str]) -> str | None:
    """The choice a reply names: exact match first, then the earliest whole-word mention."""
    cleaned = text.strip().strip("`'\".").strip()
    for c in choices:
        if cleaned.lower() == c.lower():
            return c
    found: list[tuple[int, str]] = []
    for c in choices:
        m = re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text, re.IGNORECASE)
        if m:
            found.append((m.start(), c))
    return min(found)[1] if found else None


def router_node(config: RouterConfig, ctx: NodeContext) -> Callable[..., Any]:
    """Node kind factory of `router`."""
    model = build_model(ctx, config.model) if config.model is not None else None
    prompt = load_prompt(config.prompt, config.prompt_file, ctx.base_dir, default=DEFAULT_PROMPT)
    assert prompt is not None
    names = list(config.choices)

    async def ask(state: Mapping[str, Any]) -> str | None:
        assert model is not None and prompt is not None
        variables = {
            **state,
            "choices": config.choices,
            "input": text_of(state.get(config.input)) if config.input else "",
        }
        conversation: list[BaseMessage] = [
            SystemMessage("You are a router. You only ever reply with one option name."),
            HumanMessage(prompt.render(variables)),
        ]
        for _ in range(config.attempts):
            reply = await model.ainvoke(conversation, call_config(prompt.metadata()))
            picked = parse_choice(text_of(reply), names)
            if picked is not None:
                return picked
            # Tell the model what was wrong and let it try again.
            conversation += [
                AIMessage(text_of(reply)),
                HumanMessage(f"That is not one of: {', '.join(names)}. Reply with one of them only."),
            ]
        return None

    def decide(choice: str) -> Any:
        update = {config.output: choice} if config.output else {}
        if not config.goto:
            return update
        from langgraph.graph import END
        from langgraph.types import Command

        return Command(update=update, goto=END if choice == "END" else choice)

    async def node(state: Mapping[str, Any]) -> Any:
        for rule in config.rules:
            if rule.fires(state):
                return decide(rule.to)
        picked = await ask(state) if model is not None else None
        if picked is None:
            if config.default is None:
                raise RouteError(
                    f"router {ctx.node_id!r}: the model named none of {names} "
                    f"in {config.attempts} attempt(s) and no default is set"
                )
            picked = config.default
        return decide(picked)

    node.model = model  # type: ignore[attr-defined]
    node.destinations = tuple(names)  # type: ignore[attr-defined]  # for drawing the graph
    return node
