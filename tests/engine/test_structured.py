"""Grammar-constrained decoding on the real model: every output parses and validates."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Literal

import pytest
import torch
from pydantic import BaseModel, Field

from graphwright.engine.llm import LocalEngine, RequestError
from graphwright.engine.sampling import SamplingParams
from graphwright.engine.structured import (
    CALL_BEGIN,
    GrammarFactory,
    ToolCallStreamSplitter,
    build_constraint,
    parse_tool_calls,
    prepare_messages,
)


class Address(BaseModel):
    street: str = Field(max_length=16)
    city: str = Field(max_length=12)


class Person(BaseModel):  # nested object
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=120)
    address: Address


class Category(StrEnum):
    bug = "bug"
    feature = "feature"
    question = "question"


class Ticket(BaseModel):  # enums
    priority: Literal["low", "medium", "high"]
    category: Category


class Shopping(BaseModel):  # array
    items: list[str] = Field(min_length=1, max_length=3)
    total: int = Field(ge=0, le=1000)


# A hand-written schema: required and optional fields, bounded values.
RECORD = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1, "maximum": 999},
        "ok": {"type": "boolean"},
        "note": {"type": "string", "maxLength": 15},
    },
    "required": ["id", "ok"],
}

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
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "minimum": -999, "maximum": 999},
                "b": {"type": "integer", "minimum": -999, "maximum": 999},
            },
            "required": ["a", "b"],
        },
    },
}


@pytest.fixture(scope="session")
def grammars(engine: LocalEngine) -> GrammarFactory:
    return GrammarFactory.for_engine(engine)


def _with_item_bounds(schema: dict[str, Any]) -> dict[str, Any]:
    # pydantic cannot bound the length of strings inside a list; bound them so output stays short.
    schema["properties"]["items"]["items"]["maxLength"] = 12
    return schema


def _run_all(
    engine: LocalEngine, grammars: GrammarFactory, jobs: list[tuple[str, Any]], max_tokens: int
) -> list[Any]:
    """Submit every job at once (they share the batch), then wait for each."""
    handles = []
    for prompt, compiled in jobs:
        ids = engine.encode_chat([{"role": "user", "content": prompt}])
        params = SamplingParams(temperature=0, max_tokens=max_tokens)
        handles.append(engine.submit(ids, params, grammars.constraint(compiled)))
    return [h.result().outputs[0] for h in handles]


def test_every_schema_output_parses_and_validates(engine: LocalEngine, grammars: GrammarFactory) -> None:
    models: list[type[BaseModel]] = [Person, Ticket, Shopping]
    schemas = [
        Person.model_json_schema(),
        Ticket.model_json_schema(),
        _with_item_bounds(Shopping.model_json_schema()),
    ]
    jobs = [
        ("Describe a person who lives in Paris.", grammars.json_schema(schemas[0])),
        ("File a ticket: the login page crashes.", grammars.json_schema(schemas[1])),
        ("What do I need to bake bread?", grammars.json_schema(schemas[2])),
        ("Give me a record.", grammars.json_schema(RECORD)),
        ("Describe a cat as JSON.", grammars.json_object()),
    ]
    outs = _run_all(engine, grammars, jobs, max_tokens=48)
    for model, out in zip(models, outs[:3], strict=True):
        assert out.finish_reason == "stop", out.text
        model.model_validate_json(out.text)
    record = json.loads(outs[3].text)
    assert set(record) >= {"id", "ok"} and set(record) <= {"id", "ok", "note"}
    assert isinstance(record["id"], int) and 1 <= record["id"] <= 999 and isinstance(record["ok"], bool)
    assert len(record.get("note", "")) <= 15
    # json_object may run out of tokens on an open-ended object; what it wrote is a JSON prefix.
    if outs[4].finish_reason == "stop":
        assert isinstance(json.loads(outs[4].text), dict)
    else:
        assert outs[4].text.startswith("{")


def test_sampled_outputs_validate_too(engine: LocalEngine, grammars: GrammarFactory) -> None:
    compiled = grammars.json_schema(Ticket.model_json_schema())
    ids = engine.encode_chat([{"role": "user", "content": "Report a bug."}])
    # Sampling spells words in odd, short tokens now and then: leave room for that.
    params = SamplingParams(temperature=0.7, seed=7, n=3, max_tokens=40)
    out = engine.submit(ids, params, grammars.constraint(compiled)).result()
    assert len(out.outputs) == 3
    for c in out.outputs:
        assert c.finish_reason == "stop", c.text
        Ticket.model_validate_json(c.text)


@pytest.mark.parametrize(("choice", "names"), [("required", {"get_weather", "add"}), ("add", {"add"})])
def test_tool_calls_are_valid_calls(
    engine: LocalEngine, grammars: GrammarFactory, choice: str, names: set[str]
) -> None:
    tools = [WEATHER, ADD]
    messages = prepare_messages([{"role": "user", "content": "What is the weather in Paris?"}], tools, choice)
    assert messages[0]["role"] == "system" and "get_weather" in messages[0]["content"]
    make = build_constraint(grammars, tools, choice)
    assert make is not None
    out = engine.submit(
        engine.encode_chat(messages), SamplingParams(temperature=0, max_tokens=40), make
    ).result()
    text, calls = parse_tool_calls(out.outputs[0].text)
    assert out.outputs[0].finish_reason == "stop" and text == ""
    assert len(calls) == 1 and calls[0].name in names
    args = json.loads(calls[0].arguments)
    if calls[0].name == "add":
        assert set(args) == {"a", "b"} and all(isinstance(v, int) for v in args.values())
    else:
        assert set(args) == {"city"} and isinstance(args["city"], str)


def test_mask_allows_only_grammar_tokens(engine: LocalEngine, grammars: GrammarFactory) -> None:
    make = grammars.constraint(grammars.json_schema(Ticket.model_json_schema()))
    c = make()
    logits = torch.zeros(engine.model_config.vocab_size)
    c.mask_logits(logits)
    allowed = torch.isfinite(logits).nonzero().view(-1).tolist()
    assert allowed, "the first token of an object must be allowed"
    for t in allowed:  # every allowed first token starts the object, no special token among them
        piece = engine.tokenizer.decode([t])
        assert piece.lstrip().startswith("{") or piece.strip() == ""
    bos = engine.tokenizer.token_to_id("<|im_start|>")
    assert bos is not None and bos not in allowed
    assert not c.is_terminated()


def test_auto_tool_choice_leaves_text_free(grammars: GrammarFactory, engine: LocalEngine) -> None:
    c = build_constraint(grammars, [WEATHER], "auto")
    assert c is not None
    logits = torch.zeros(engine.model_config.vocab_size)
    c().mask_logits(logits)
    # Free text: ordinary words are allowed at the start, and so is the call's opening tag.
    word = engine.tokenizer.encode("Hello")[0]
    assert torch.isfinite(logits[word]) and torch.isfinite(logits[engine.tokenizer.encode("<")[0]])
    assert build_constraint(grammars, [WEATHER], "none") is None
    assert all(torch.isfinite(logits[t]) for t in engine.tokenizer.eos_token_ids)  # text may end
    # On the real model: text that makes no call is exactly what the model writes unconstrained.
    ids = engine.encode_chat(prepare_messages([{"role": "user", "content": "Hi"}], [WEATHER], "auto"))
    params = SamplingParams(temperature=0, max_tokens=12)
    free, constrained = engine.submit(ids, params), engine.submit(ids, params, c)
    text = constrained.result().outputs[0].text
    assert text == free.result().outputs[0].text and parse_tool_calls(text) == (text, [])


def test_bad_schemas_and_choices_are_request_errors(grammars: GrammarFactory) -> None:
    with pytest.raises(RequestError) as err:
        build_constraint(
            grammars, response_format={"type": "json_schema", "json_schema": {"schema": {"type": "bogus"}}}
        )
    assert err.value.param == "response_format"
    with pytest.raises(RequestError):
        build_constraint(grammars, response_format={"type": "json_schema", "json_schema": {}})
    with pytest.raises(RequestError):
        build_constraint(grammars, response_format={"type": "yaml"})
    with pytest.raises(RequestError) as err:
        build_constraint(grammars, [WEATHER], "no_such_tool")
    assert err.value.param == "tool_choice"


def test_parse_tool_calls_and_stream_splitter() -> None:
    call = CALL_BEGIN + '{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    text, calls = parse_tool_calls("Sure. " + call)
    assert text == "Sure." and calls[0].name == "add" and json.loads(calls[0].arguments) == {"a": 1, "b": 2}
    assert parse_tool_calls("no calls here") == ("no calls here", [])
    truncated = CALL_BEGIN + '{"name": "add", "argu'
    assert parse_tool_calls(truncated) == (truncated, [])

    split = ToolCallStreamSplitter()
    emitted = "".join(
        split.feed(piece)
        for piece in ["Sure", ". <tool", "_call>", '{"name": "add", ', '"arguments": {}}</tool_call>']
    )
    assert emitted == "Sure. "
    assert split.finish()[1][0].name == "add"
    plain = ToolCallStreamSplitter()
    assert plain.feed("a <to") == "a " and plain.finish() == ("<to", [])


def test_prepare_messages_writes_tool_turns_back() -> None:
    msgs = prepare_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        [WEATHER],
        "auto",
    )
    assert msgs[0]["content"].startswith("Be brief.") and "get_weather" in msgs[0]["content"]
    assert msgs[1] == {"role": "user", "content": "Weather?"}
    assert (
        msgs[2]["content"]
        == CALL_BEGIN + '{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    )
    # a tool result becomes a user turn naming the tool (the template has no tool role)
    assert msgs[3] == {
        "role": "user",
        "content": "The get_weather tool returned: sunny\nNow answer my question using this result.",
    }
