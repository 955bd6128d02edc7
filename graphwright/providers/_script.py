"""Settings of the `scripted` provider (pydantic only: importing this stays cheap)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from graphwright.providers._retry import RetryConfig


class ScriptedToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    # A dict is sent as JSON; a string is sent as-is, so a script can send
    # invalid JSON the way a weak model does.
    args: dict[str, Any] | str = Field(default_factory=dict)
    id: str | None = None


class ScriptedError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: int = 500
    message: str = "scripted failure"
    retry_after: float | None = None


class ScriptedReply(BaseModel):
    """One reply: text, tool calls, or an error to raise."""

    model_config = ConfigDict(extra="forbid")

    content: str = ""
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    error: ScriptedError | None = None


class ScriptedRule(ScriptedReply):
    """A reply given when the last message matches; the first matching rule wins."""

    match: str = Field(default=".*", description="regex searched in the last message's text")
    role: Literal["human", "ai", "tool", "system"] | None = None
    times: int | None = Field(default=None, ge=1, description="fire at most this often")


class ScriptedConfig(BaseModel):
    """Settings of the `scripted` provider."""

    model_config = ConfigDict(extra="forbid")

    model: str = "scripted"
    replies: list[str | ScriptedReply] = Field(default_factory=list)
    rules: list[ScriptedRule] = Field(default_factory=list)
    default: str | None = Field(default=None, description="reply once rules and replies run out")
    cycle: bool = Field(default=False, description="start the reply list over when it runs out")
    temperature: float = 0.0
    retry: RetryConfig = Field(default_factory=lambda: RetryConfig(wait_multiplier=0.0))
    cache: bool = False
    cache_path: str | None = None
