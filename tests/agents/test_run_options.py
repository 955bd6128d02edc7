"""Run-wide options through the graph runner: `--provider`, `--no-cache`, and secrets.

A planted canary API key must not appear in any file a run writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graphwright.graphs import GraphRunError
from graphwright.graphs._run import run_spec
from graphwright.plugins import Registry
from graphwright.providers import UsageRecorder
from graphwright.testing.provider_suite import Fault, OpenAIStubServer, StubReply

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent_calculator.yaml"
CANARY = "sk-canary-7f3a9c2e5b1d4086aa"


def calculator_model(body: dict[str, Any]) -> StubReply:
    """An OpenAI-compatible 'model' that uses the calculator, then answers."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return StubReply(f"17*23 = {last['content']}")
    return StubReply(tool_calls=[{"name": "calculator", "arguments": '{"expression": "17*23"}'}])


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer(reply=calculator_model, key=lambda body: "all") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", CANARY)
        yield server


def run(registry: Registry, runs: Path, options: dict[str, Any], rec: UsageRecorder) -> Any:
    return asyncio.run(run_spec(EXAMPLE, {"question": "What is 17*23?"}, runs_dir=runs,
                                registry=registry, options=options, callbacks=[rec]))


def no_canary_in(root: Path) -> None:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files, "the run wrote nothing?"
    for path in files:
        assert CANARY.encode() not in path.read_bytes(), f"canary key leaked into {path}"


def test_provider_override_runs_the_spec_against_openai(
    registry: Registry, endpoint: OpenAIStubServer, tmp_path: Path
) -> None:
    rec = UsageRecorder()
    result = run(registry, tmp_path / "runs", {"provider": "openai"}, rec)
    assert result.state["answer"] == "17*23 = 391"
    assert endpoint.headers[0]["authorization"] == f"Bearer {CANARY}"
    assert {c.provider for c in rec.calls} == {"openai"}
    assert rec.totals()["tool_calls"] == 1
    no_canary_in(tmp_path / "runs")


def test_cache_under_the_run_dir_and_no_cache(
    registry: Registry, endpoint: OpenAIStubServer, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    options = {"provider": "openai", "provider_config": {"temperature": 0}}
    run(registry, runs, options, UsageRecorder())
    assert len(endpoint.log["all"]) == 2 and (runs / "cache.sqlite").exists()
    again = UsageRecorder()
    run(registry, runs, options, again)
    assert len(endpoint.log["all"]) == 2  # all from the cache
    assert again.totals()["cache_hits"] == 2 and again.totals()["cost"] in (0.0, None)
    off = UsageRecorder()
    run(registry, runs, {**options, "cache": False}, off)
    assert len(endpoint.log["all"]) == 4
    assert off.totals()["cache_hits"] == 0 and off.totals()["cache_misses"] == 0
    no_canary_in(runs)


def test_a_failing_run_leaks_no_key_either(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The server echoes the key in its 401 message, as OpenAI's does.
    def reject(body: dict[str, Any], hit: int) -> Fault:
        return Fault("status", 401, message="Incorrect API key provided: {api_key}")

    with OpenAIStubServer(fault=reject) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", CANARY)
        rec = UsageRecorder()
        with pytest.raises(GraphRunError) as info:
            run(registry, tmp_path / "runs", {"provider": "openai"}, rec)
    assert "401" in str(info.value) and CANARY not in str(info.value)
    assert rec.calls and rec.calls[0].error and CANARY not in rec.calls[0].error
    no_canary_in(tmp_path / "runs")
