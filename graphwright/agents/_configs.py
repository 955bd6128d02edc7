"""Config models of the agent node kinds (pydantic only: registering them stays cheap).

Each declares `reads()` and `writes()`, the channels it uses, which the graph
compiler checks against the spec's `state:` before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from graphwright.agents._common import coerce_model, coerce_tools, text_of


class AgentConfig(BaseModel):
    """`kind: agent`: a system prompt, a tool list and a conversation channel."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model: Any = Field(description="{provider: ..., <provider settings>} or a chat model")
    tools: list[Any] = Field(default_factory=list, description="tool names or {name, with}")
    system: str | None = Field(default=None, description="jinja2 template over the state")
    system_file: str | None = Field(default=None, description="template file, relative to the spec")
    input: str | None = Field(default=None, description="channel whose value starts the conversation")
    messages: str | None = Field(default="messages", description="channel holding the conversation")
    output: str | None = Field(default=None, description="channel for the final answer text")
    max_steps: int = Field(default=8, ge=1, le=100, description="model calls before giving up")
    parallel_tool_calls: bool = True
    tool_budget: int | None = Field(
        default=None, ge=0, description="tool calls allowed in the whole run (shared by all agents)"
    )

    @field_validator("model", mode="before")
    @classmethod
    def check_model(cls, value: Any) -> Any:
        return coerce_model(value)

    @field_validator("tools", mode="before")
    @classmethod
    def check_tools(cls, value: Any) -> Any:
        return coerce_tools(value)

    def reads(self) -> list[str]:
        return [c for c in (self.input, self.messages) if c]

    def writes(self) -> list[str]:
        return [c for c in (self.messages, self.output) if c]


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str
    output: str


class LLMConfig(BaseModel):
    """`kind: llm`."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model: Any
    prompt: str | None = Field(default=None, description="jinja2 template over the state")
    prompt_file: str | None = Field(default=None, description="template file, relative to the spec")
    system: str | None = None
    inputs: list[str] | None = Field(default=None, description="channels the template may use (default: all)"
    )
    output: str = "output"
    messages: str | None = Field(
        default=None, description="conversation channel: sent before the prompt, reply appended"
    )
    examples: list[Example] = Field(default_factory=list, description="few-shot turns")
    chain_of_thought: bool = False
    reasoning_output: str | None = Field(default=None, description="channel for the reasoning (CoT)")
    structured_output: dict[str, Any] | type[BaseModel] | None = Field(
        default=None, description="JSON schema; the output channel then holds a dict"
    )
    structured_method: Literal["function_calling", "json_schema", "json_mode"] | None = None

    @field_validator("model", mode="before")
    @classmethod
    def check_model(cls, value: Any) -> Any:
        return coerce_model(value)

    @model_validator(mode="after")
    def _one_prompt(self) -> LLMConfig:
        if (self.prompt is None) == (self.prompt_file is None):
            raise ValueError("give exactly one of `prompt` (inline template) or `prompt_file`")
        if self.structured_output is not None and self.chain_of_thought:
            raise ValueError("chain_of_thought and structured_output do not combine")
        return self

    def reads(self) -> list[str]:
        return [*(self.inputs or []), *([self.messages] if self.messages else [])]

    def writes(self) -> list[str]:
        extra = [c for c in (self.messages, self.reasoning_output) if c]
        return [self.output, *extra]


class RouteRule(BaseModel):
    """`{channel: question, match: "\\\\d+ *[*+/-]", to: math}` or `{channel: n, equals: 0, to: END}`."""

    model_config = ConfigDict(extra="forbid")

    channel: str
    match: str | None = Field(default=None, description="regex searched in the channel's text")
    equals: Any = None
    to: str

    @model_validator(mode="after")
    def _one_test(self) -> RouteRule:
        if self.match is None and self.equals is None:
            raise ValueError("a rule needs `match` (a regex) or `equals`")
        return self

    def fires(self, state: Mapping[str, Any]) -> bool:
        value = state.get(self.channel)
        if self.match is not None:
            return re.search(self.match, text_of(value), re.IGNORECASE) is not None
        return bool(value == self.equals)


class RouterConfig(BaseModel):
    """`kind: router`."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    choices: dict[str, str] = Field(description="choice -> description (a list also works)")
    rules: list[RouteRule] = Field(default_factory=list, description="tried first, in order")
    model: Any = Field(default=None, description="asked when no rule fires")
    prompt: str | None = None
    prompt_file: str | None = None
    input: str | None = Field(default=None, description="channel shown to the model as {{ input }}")
    default: str | None = Field(default=None, description="choice when nothing else decides")
    output: str | None = Field(default="route", description="channel receiving the choice")
    goto: bool = Field(
        default=False, description="also route with Command(goto=choice); else use `when:` edges"
    )
    attempts: int = Field(default=2, ge=1, le=10, description="model tries before `default`/error")

    @field_validator("choices", mode="before")
    @classmethod
    def _list_ok(cls, value: Any) -> Any:
        return {str(v): "" for v in value} if isinstance(value, list | tuple) else value

    @field_validator("model", mode="before")
    @classmethod
    def check_model(cls, value: Any) -> Any:
        return coerce_model(value)

    @model_validator(mode="after")
    def _known_targets(self) -> RouterConfig:
        if not self.choices:
            raise ValueError("a router needs at least one choice")
        for name in [r.to for r in self.rules] + ([self.default] if self.default else []):
            if name not in self.choices:
                raise ValueError(f"{name!r} is not one of the choices {sorted(self.choices)}")
        if self.model is None and self.default is None:
            raise ValueError("a router without a model needs a `default` choice")
        return self

    def reads(self) -> list[str]:
        return sorted({r.channel for r in self.rules} | ({self.input} if self.input else set()))

    def writes(self) -> list[str]:
        return [self.output] if self.output else []


class PlannerConfig(BaseModel):
    """`kind: planner`."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model: Any = Field(description="the planner's model")
    executor_model: Any = Field(default=None, description="model of the step agent (default: model)")
    tools: list[Any] = Field(default_factory=list)
    input: str = Field(default="question", description="channel holding the task")
    output: str = Field(default="answer", description="channel for the final answer")
    plan_output: str | None = Field(default="plan", description="channel for the steps and results")
    max_plan_steps: int = Field(default=5, ge=1, le=20)
    max_replans: int = Field(default=2, ge=0, le=10)
    executor_max_steps: int = Field(default=6, ge=1, le=50)
    structured_method: str | None = Field(default=None, description="with_structured_output method")
    tool_budget: int | None = Field(default=None, ge=0)

    @field_validator("model", "executor_model", mode="before")
    @classmethod
    def check_model(cls, value: Any) -> Any:
        return coerce_model(value)

    @field_validator("tools", mode="before")
    @classmethod
    def check_tools(cls, value: Any) -> Any:
        return coerce_tools(value)

    def reads(self) -> list[str]:
        return [self.input]

    def writes(self) -> list[str]:
        return [self.output, *([self.plan_output] if self.plan_output else [])]


class ToolNodeConfig(BaseModel):
    """`kind: tool`: run one tool with arguments taken from channels."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    tool: Any = Field(description="tool name, {name, with}, or a Tool")
    inputs: dict[str, str] = Field(default_factory=dict, description="argument -> channel")
    args: dict[str, Any] = Field(default_factory=dict, description="argument -> fixed value")
    output: str = Field(description="channel for the tool's text output")
    error_output: str | None = Field(
        default=None, description="channel for an error message; unset: a failing tool fails the node"
    )

    @field_validator("tool", mode="before")
    @classmethod
    def check_tool(cls, value: Any) -> Any:
        return coerce_tools([value])[0]

    def reads(self) -> list[str]:
        return sorted(set(self.inputs.values()))

    def writes(self) -> list[str]:
        return [self.output, *([self.error_output] if self.error_output else [])]
