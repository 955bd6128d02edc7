"""`@tool`: the schema comes from type hints, the description from the docstring."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

from graphwright.tools import Tool, ToolArgumentsError, tool


@tool
def convert(amount: float, unit: Literal["km", "mi"] = "km", precise: bool = False) -> dict[str, float]:
    """Convert a distance.

    Args:
        amount: how far
        unit: the unit of `amount`
        precise: keep all digits
    """
    km = amount if unit == "km" else amount * 1.609344
    return {"km": km if precise else round(km, 1)}


@tool(name="shout", description="Upper-case a text.")
async def loud(text: str) -> str:
    await asyncio.sleep(0)
    return text.upper()


def test_schema_from_type_hints_and_docstring() -> None:
    assert isinstance(convert, Tool) and convert.name == "convert"
    assert convert.description == "Convert a distance."
    params = convert.parameters
    assert params["required"] == ["amount"]
    assert params["properties"]["amount"] == {"description": "how far", "title": "Amount",
                                              "type": "number"}
    assert params["properties"]["unit"]["enum"] == ["km", "mi"]
    assert params["properties"]["unit"]["default"] == "km"
    assert params["additionalProperties"] is False


def test_runs_and_renders_json() -> None:
    assert convert.run({"amount": 10, "unit": "mi"}) == '{"km": 16.1}'
    assert convert.run('{"amount": "2.5"}') == '{"km": 2.5}'  # pydantic's lax coercion


def test_async_tool_and_explicit_name() -> None:
    assert loud.name == "shout" and loud.is_async
    assert asyncio.run(loud.arun({"text": "hi"})) == "HI"
    assert loud.run({"text": "sync path"}) == "SYNC PATH"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"amount": "far"}, "amount: Input should be a valid number"),
        ({}, "amount: Field required"),
        ({"amount": 1, "unit": "yards"}, "unit: Input should be 'km' or 'mi'"),
        ({"amount": 1, "speed": 3}, "speed: Extra inputs are not permitted"),
        ("[1, 2]", "must be a JSON object"),
        ("{amount: 1", "not valid JSON"),
    ],
)
def test_bad_arguments_name_the_problem(args: object, message: str) -> None:
    with pytest.raises(ToolArgumentsError) as info:
        convert.run(args)  # type: ignore[arg-type]
    assert message in str(info.value) and "convert" in str(info.value)


def test_bad_names_are_refused() -> None:
    with pytest.raises(ValueError, match="tool name"):
        tool(name="has space")(lambda: None)
