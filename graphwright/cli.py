"""The `graphwright` command. Imports only typer/rich/pydantic at start-up; every
command imports what it needs inside, so `graphwright --help` answers at once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

app = typer.Typer(help="graphwright: agent graphs of LLMs, tools, retrievers and judges.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
graph_app = typer.Typer(help="Inspect graph specs.", no_args_is_help=True)
plugins_app = typer.Typer(help="Installed plugins and their components.", no_args_is_help=True)
runs_app = typer.Typer(help="Checkpointed threads: list and prune.", no_args_is_help=True)
app.add_typer(graph_app, name="graph")
app.add_typer(plugins_app, name="plugins")
app.add_typer(runs_app, name="runs")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # one line per error: file:line stays greppable

RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", help="where run records and the default "
                        "SQLite checkpoints live", envvar="GRAPHWRIGHT_RUNS_DIR")
CHECKPOINT = typer.Option(None, "--checkpoint", help="checkpoint store: a SQLite path or "
                          "postgresql://... (default: RUNS_DIR/checkpoints.sqlite)",
                          envvar="GRAPHWRIGHT_CHECKPOINT")


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def _spec_errors(exc: Any) -> NoReturn:
    for issue in exc.issues:
        err.print(f"[red]{issue}[/]", highlight=False)
    err.print(f"{len(exc.issues)} problem(s) found; nothing was run.")
    raise typer.Exit(2)


def _parse_inputs(pairs: list[str], input_json: Path | None, spec: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if input_json is not None:
        try:
            loaded = json.loads(input_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            _fail(f"--input-json {input_json}: {exc}", 2)
        if not isinstance(loaded, dict):
            _fail(f"--input-json {input_json}: expected a JSON object", 2)
        values.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            _fail(f"-i {pair!r}: expected key=value", 2)
        channel = spec.state.get(key)
        if channel is not None and _takes_text(channel.type):
            values[key] = raw  # a string channel takes the text as given
        else:
            try:
                values[key] = json.loads(raw)
            except ValueError:
                values[key] = raw
    return values


def _takes_text(type_text: str) -> bool:
    """`str`, `str | None`, `str | int`: `-i k=123` stays the text "123" there."""
    import typing

    from graphwright.graphs._types import parse_type

    try:
        tp = parse_type(type_text)
    except ValueError:
        return False
    return tp is str or str in typing.get_args(tp)


class _Printer:
    """Streams node events and model tokens, with the subgraph path."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.in_tokens = False

    def __call__(self, kind: str, ns: tuple[str, ...], node: str, payload: Any) -> None:
        if self.quiet:
            return
        where = "/".join([p.split(":")[0] for p in ns] + [node])
        if kind == "token":
            if not self.in_tokens:
                err.print(f"[dim]{where} ›[/] ", end="")
                self.in_tokens = True
            err.print(payload, end="", markup=False, highlight=False)
            return
        if self.in_tokens:
            err.print()
            self.in_tokens = False
        if kind == "start":
            err.print(f"[cyan]▶ {where}[/]")
        elif kind == "update":
            from graphwright.graphs._record import jsonable

            text = json.dumps(jsonable(payload), ensure_ascii=False)
            err.print(f"[green]✓ {where}[/] {text[:300]}", highlight=False)
        elif kind == "error":
            err.print(f"[red]✗ {where}: {type(payload).__name__}: {payload}[/]", highlight=False)


def _callbacks() -> list[Any]:
    try:
        from graphwright.providers import UsageRecorder  # type: ignore[attr-defined]
    except ImportError:
        return []
    return [UsageRecorder()]


def _finish(result: Any, as_json: bool) -> None:
    from graphwright.graphs._record import jsonable

    if as_json:
        sys.stdout.write(json.dumps(jsonable(result.state), indent=2, ensure_ascii=False) + "\n")
    else:
        out.print_json(json.dumps(jsonable(result.state), ensure_ascii=False))
    if result.status == "interrupted":
        err.print(f"[yellow]paused before {', '.join(result.next_nodes)}[/]; continue with "
                  f"`graphwright resume {result.thread_id}`")
    err.print(f"[dim]thread {result.thread_id} · record {result.record_path}[/]")


@app.command()
def run(
    spec: Path = typer.Argument(..., help="graph spec (YAML or JSON)"),
    inputs: list[str] = typer.Option([], "-i", "--input", help="key=value (repeatable)"),
    input_json: Path | None = typer.Option(None, "--input-json", help="inputs as a JSON object"),
    thread: str | None = typer.Option(None, "--thread", help="thread id (default: new)"),
    checkpoint: str | None = CHECKPOINT,
    provider: str | None = typer.Option(None, "--provider", help="use this provider for every "
                                        "model-using node"),
    no_cache: bool = typer.Option(False, "--no-cache", help="do not use the response cache"),
    as_json: bool = typer.Option(False, "--json", help="print only the final state as JSON"),
    runs_dir: Path = RUNS_DIR,
) -> None:
    """Run a graph spec, streaming node events; prints the final state."""
    from graphwright.graphs import GraphRunError, SpecError, check, load_spec
    from graphwright.graphs._run import run_spec

    try:
        loaded = load_spec(spec)
        issues, _ = check(loaded)
        if issues:
            raise SpecError(issues)
        values = _parse_inputs(inputs, input_json, loaded)
        options = {"provider": provider, "cache": not no_cache}
        result = asyncio.run(run_spec(
            loaded, values, thread_id=thread, checkpoint=checkpoint, runs_dir=runs_dir,
            options=options, callbacks=_callbacks(), on_event=_Printer(as_json)))
    except SpecError as exc:
        _spec_errors(exc)
    except GraphRunError as exc:
        _fail(str(exc), 1)
    _finish(result, as_json)


@app.command()
def resume(
    thread: str = typer.Argument(..., help="thread id printed by `run`"),
    inputs: list[str] = typer.Option([], "-i", "--input", help="key=value written into the "
                                     "state before continuing (e.g. a reviewer's edit)"),
    spec: Path | None = typer.Option(None, "--spec", help="spec file (default: from the run "
                                     "record)"),
    checkpoint: str | None = CHECKPOINT,
    as_json: bool = typer.Option(False, "--json", help="print only the final state as JSON"),
    runs_dir: Path = RUNS_DIR,
) -> None:
    """Continue a thread from its last checkpoint (after an interrupt, crash or fix)."""
    from graphwright.graphs import GraphRunError, SpecError, load_spec
    from graphwright.graphs._record import find_thread_record
    from graphwright.graphs._run import resume_thread

    try:
        spec_path = spec
        if spec_path is None:
            found = find_thread_record(runs_dir, thread)
            spec_path = Path(found["spec_path"]) if found and found.get("spec_path") else None
        values = _parse_inputs(inputs, None, load_spec(spec_path)) if spec_path else {}
        result = asyncio.run(resume_thread(
            thread, updates=values or None, spec=spec_path, checkpoint=checkpoint,
            runs_dir=runs_dir, callbacks=_callbacks(), on_event=_Printer(as_json)))
    except SpecError as exc:
        _spec_errors(exc)
    except GraphRunError as exc:
        _fail(str(exc), 1)
    _finish(result, as_json)


@graph_app.command("check")
def graph_check(spec: Path = typer.Argument(..., help="graph spec")) -> None:
    """Report every problem in a spec (exit 2), or say it is fine."""
    from graphwright.graphs import SpecError, check, load_spec

    try:
        issues, _ = check(load_spec(spec))
    except SpecError as exc:
        _spec_errors(exc)
    if issues:
        _spec_errors(SpecError(issues))
    out.print(f"[green]ok[/] {spec}")


@graph_app.command("draw")
def graph_draw(
    spec: Path = typer.Argument(..., help="graph spec"),
    fmt: str = typer.Option("mermaid", "--format", help="mermaid | png"),
    output: Path | None = typer.Option(None, "-o", "--output", help="file (png: required)"),
) -> None:
    """Draw a spec's graph as mermaid text (or a PNG, rendered offline)."""
    from graphwright.graphs import SpecError, check, load_spec
    from graphwright.graphs._draw import draw_png, to_mermaid

    if fmt not in ("mermaid", "png"):
        _fail(f"--format {fmt!r}: use mermaid or png", 2)
    try:
        loaded = load_spec(spec)
        issues, _ = check(loaded)
        if issues:
            raise SpecError(issues)
    except SpecError as exc:
        _spec_errors(exc)
    if fmt == "mermaid":
        text = to_mermaid(loaded)
        if output:
            output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return
    if output is None:
        _fail("--format png needs -o FILE", 2)
    draw_png(loaded, output)
    err.print(f"wrote {output}")


@plugins_app.command("list")
def plugins_list(as_json: bool = typer.Option(False, "--json", help="JSON on stdout")) -> None:
    """Every registered component: kind, name, plugin, distribution, version."""
    import warnings

    from graphwright.plugins import Registry

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        registry = Registry.discover()
    rows = [
        {"kind": c.kind, "name": c.name, "plugin": c.plugin, "distribution": c.distribution,
         "version": c.version, "description": c.component.description}
        for c in registry.all()
    ]
    if as_json:
        sys.stdout.write(json.dumps({"components": rows, "errors": registry.load_errors},
                                    indent=2) + "\n")
        return
    from rich.table import Table

    table = Table("kind", "name", "plugin", "distribution", "version", "description")
    for r in rows:
        table.add_row(r["kind"], r["name"], r["plugin"], r["distribution"], r["version"],
                      r["description"])
    out.print(table)
    for msg in registry.load_errors:
        err.print(f"[yellow]warning:[/] {msg}", highlight=False)


@runs_app.command("list")
def runs_list(checkpoint: str | None = CHECKPOINT, runs_dir: Path = RUNS_DIR,
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Threads in the checkpoint store, newest first."""
    from graphwright.graphs._checkpoint import list_threads
    from graphwright.graphs._run import default_checkpoint_path

    threads = list_threads(checkpoint, default_path=default_checkpoint_path(runs_dir))
    if as_json:
        sys.stdout.write(json.dumps([t.model_dump(mode="json") for t in threads], indent=2) + "\n")
        return
    from rich.table import Table

    table = Table("thread", "checkpoints", "first", "last")
    for t in threads:
        table.add_row(t.thread_id, str(t.checkpoints), str(t.first_ts), str(t.last_ts))
    out.print(table)


@runs_app.command("prune")
def runs_prune(
    older_than: str | None = typer.Option(None, "--older-than", help="e.g. 7d, 12h, 30m"),
    keep_last: int | None = typer.Option(None, "--keep-last", help="keep the N newest threads"),
    checkpoint: str | None = CHECKPOINT,
    runs_dir: Path = RUNS_DIR,
) -> None:
    """Delete old threads' checkpoints (both backends)."""
    from graphwright.graphs._checkpoint import parse_duration, prune
    from graphwright.graphs._run import default_checkpoint_path

    if older_than is None and keep_last is None:
        _fail("give --older-than and/or --keep-last", 2)
    try:
        age = parse_duration(older_than) if older_than else None
    except ValueError as exc:
        _fail(str(exc), 2)
    try:
        result = prune(checkpoint, default_path=default_checkpoint_path(runs_dir),
                       older_than=age, keep_last=keep_last)
    except ValueError as exc:  # e.g. --keep-last -1, or a checkpoint URL of no known form
        _fail(str(exc), 2)
    out.print(json.dumps(result.model_dump(mode="json")))

MODEL = typer.Option("smollm2", "--model", help="alias (smollm2), a .gguf path, or a Hugging "
                     "Face Llama folder")
DTYPE = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 (default: float32 on "
                     "CPU, bfloat16 on CUDA)")
QUANTIZE = typer.Option("none", "--quantize", help="none | int8 | int4 (weight-only; int4 keeps "
                        "a Q4_1 GGUF's own 4-bit weights)")
DEVICE = typer.Option(None, "--device", help="cpu | cuda (default: cuda when available)")
COMPILE = typer.Option(False, "--compile", help="compile the decode step: faster tokens "
                       "after a compile at load (about a minute the first time, ~10 s later)")


def _engine_options(
    dtype: str | None, quantize: str, device: str | None, compile: bool = False
) -> dict[str, Any]:
    if quantize not in ("none", "int8", "int4"):
        _fail(f"--quantize {quantize!r}: use none, int8 or int4", 2)
    if dtype not in (None, "float32", "bfloat16", "float16"):
        _fail(f"--dtype {dtype!r}: use float32, bfloat16 or float16", 2)
    options: dict[str, Any] = {"quantize": quantize, "compile": compile}
    if dtype:
        options["dtype"] = dtype
    if device:
        options["device"] = device
    return options


@app.command()
def serve(
    model: str = MODEL,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    dtype: str | None = DTYPE,
    quantize: str = QUANTIZE,
    device: str | None = DEVICE,
    compile: bool = COMPILE,
) -> None:
    """Serve a local model over the OpenAI HTTP API (/v1/chat/completions, /v1/models, ...)."""
    options = _engine_options(dtype, quantize, device, compile)
    from graphwright.engine.server import serve as run_server
    from graphwright.engine.weights import ModelLoadError

    try:
        run_server(model, host=host, port=port, **options)
    except ModelLoadError as exc:
        _fail(str(exc), 2)


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="the user message"),
    model: str = MODEL,
    system: str | None = typer.Option(None, "--system", help="system prompt"),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy"),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int | None = typer.Option(None, "--seed"),
    dtype: str | None = DTYPE,
    quantize: str = QUANTIZE,
    device: str | None = DEVICE,
    compile: bool = COMPILE,
) -> None:
    """Stream one chat answer from a local model to the terminal."""
    options = _engine_options(dtype, quantize, device, compile)
    from graphwright.engine.llm import LocalEngine
    from graphwright.engine.sampling import SamplingParams
    from graphwright.engine.weights import ModelLoadError

    try:
        engine = LocalEngine.load(model, **options)
    except ModelLoadError as exc:
        _fail(str(exc), 2)
    try:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}]
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                seed=seed)
        for event in engine.submit(engine.encode_chat(messages), params):
            sys.stdout.write(event.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
    finally:
        engine.close()


@app.command()
def demo(runs_dir: Path = RUNS_DIR) -> None:
    """Run the main example job on the embedded defaults."""
    from graphwright._demo import run_demo

    raise typer.Exit(run_demo(runs_dir))


def main() -> None:
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app()


if __name__ == "__main__":
    main()
