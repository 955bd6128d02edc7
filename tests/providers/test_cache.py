"""The response cache: deterministic calls only, keyed by everything that changes the answer."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graphwright.plugins import Registry
from graphwright.providers import UsageRecorder
from graphwright.testing.provider_suite import OpenAIStubServer

CANARY = "sk-canary-cache-0123456789"


@pytest.fixture
def server() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as s:
        yield s


def _model(registry: Registry, server: OpenAIStubServer, path: Path, **settings: Any) -> Any:
    config = {"base_url": server.url, "api_key": CANARY, "model": "stub",
              "cache_path": str(path), **settings}
    return registry.build("provider", "openai", config)


def test_deterministic_calls_are_served_from_the_cache(
    registry: Registry, server: OpenAIStubServer, tmp_path: Path
) -> None:
    model = _model(registry, server, tmp_path / "c.sqlite", temperature=0)
    rec = UsageRecorder()
    first = model.invoke("hi", config={"callbacks": [rec]})
    second = model.invoke("hi", config={"callbacks": [rec]})
    assert first.content == second.content == "echo: hi"
    assert server.log["hi"] == ["ok"]  # one request only
    assert [c.cache for c in rec.calls] == ["miss", "hit"]
    assert rec.totals()["cache_hits"] == 1 and rec.totals()["cache_misses"] == 1
    assert second.usage_metadata == first.usage_metadata


def test_cache_survives_a_new_model_and_streams_hits(
    registry: Registry, server: OpenAIStubServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.sqlite"
    _model(registry, server, path, seed=7).invoke("hello")
    again = _model(registry, server, path, seed=7)
    chunks = list(again.stream("hello"))
    assert "".join(str(c.content) for c in chunks) == "echo: hello"
    assert server.log["hello"] == ["ok"]


def test_streamed_answers_are_stored_too(
    registry: Registry, server: OpenAIStubServer, tmp_path: Path
) -> None:
    model = _model(registry, server, tmp_path / "c.sqlite", temperature=0)
    streamed = "".join(str(c.content) for c in model.stream("stream me"))
    assert model.invoke("stream me").content == streamed == "echo: stream me"
    assert server.log["stream me"] == ["ok"]


def test_sampling_calls_are_never_cached(
    registry: Registry, server: OpenAIStubServer, tmp_path: Path
) -> None:
    model = _model(registry, server, tmp_path / "c.sqlite", temperature=0.7)
    model.invoke("roll")
    model.invoke("roll")
    assert server.log["roll"] == ["ok", "ok"]


def test_cache_off_by_setting(registry: Registry, server: OpenAIStubServer, tmp_path: Path) -> None:
    model = _model(registry, server, tmp_path / "c.sqlite", temperature=0, cache=False)
    model.invoke("x")
    model.invoke("x")
    assert server.log["x"] == ["ok", "ok"]


@pytest.mark.parametrize(
    "change",
    [
        {"model": "other"},
        {"temperature": 0, "max_tokens": 5},
        {"seed": 1},
        {"base_url": None},  # another endpoint
    ],
)
def test_key_covers_model_sampling_and_endpoint(
    registry: Registry, tmp_path: Path, change: dict[str, Any]
) -> None:
    with OpenAIStubServer() as one, OpenAIStubServer() as two:
        path = tmp_path / "c.sqlite"
        _model(registry, one, path, temperature=0).invoke("q")
        settings = {"temperature": 0, **change}
        target = two if change.get("base_url", "") is None else one
        settings.pop("base_url", None)
        _model(registry, target, path, **settings).invoke("q")
        assert len(one.log.get("q", [])) + len(two.log.get("q", [])) == 2


def test_key_covers_tools_and_messages(
    registry: Registry, server: OpenAIStubServer, tmp_path: Path
) -> None:
    model = _model(registry, server, tmp_path / "c.sqlite", temperature=0)
    tool = {"type": "function", "function": {"name": "t", "description": "d",
                                             "parameters": {"type": "object", "properties": {}}}}
    model.invoke("same")
    model.bind_tools([tool]).invoke("same")
    model.invoke([("system", "be brief"), ("human", "same")])
    assert server.log["same"] == ["ok", "ok", "ok"]


def test_cache_file_holds_no_key_and_no_prompt(
    registry: Registry, server: OpenAIStubServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.sqlite"
    _model(registry, server, path, temperature=0).invoke("secret-question")
    keys = [r[0] for r in sqlite3.connect(path).execute("SELECT key FROM responses")]
    assert len(keys) == 1 and len(keys[0]) == 64
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert CANARY.encode() not in raw
