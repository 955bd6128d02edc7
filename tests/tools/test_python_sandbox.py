"""The `python` tool's sandbox against escapes: each is refused or killed with a clear error."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator

import pytest

from graphwright.tools import PythonToolConfig, ToolError, run_python

CFG = PythonToolConfig(timeout_s=3, memory_mb=256)


@pytest.fixture
def listener() -> Iterator[int]:
    """A real port on loopback, so a refused connect is the sandbox's doing."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def run(code: str, cfg: PythonToolConfig = CFG) -> str:
    return run_python(textwrap.dedent(code), cfg)


def test_ordinary_code_runs() -> None:
    out = run("""
        import json, math, collections
        print(json.dumps({"pi": round(math.pi, 3)}), collections.Counter("aab")["a"])
    """)
    assert out == '{"pi": 3.142} 2\n'


def test_files_inside_its_directory_are_fine() -> None:
    assert run("open('notes.txt', 'w').write('kept'); print(open('notes.txt').read())") == "kept\n"


def test_socket_connect_is_refused(listener: int) -> None:
    with pytest.raises(ToolError, match="network access is refused"):
        run(f"import socket\nsocket.create_connection(('127.0.0.1', {listener}), timeout=1)")


def test_reading_outside_its_directory_is_refused() -> None:
    with pytest.raises(ToolError, match=r"open\('/etc/passwd'\) outside the working directory"):
        run("print(open('/etc/passwd').read())")


@pytest.mark.parametrize(
    "code",
    [
        "open('/tmp/gw-escape.txt', 'w').write('x')",
        # the interpreter's own files are readable, never writable
        "import os, sys; os.open(os.path.join(sys.prefix, 'gw-escape'), os.O_WRONLY | os.O_CREAT)",
        "import os; os.open('/etc/passwd', os.O_RDONLY)",
    ],
)
def test_writing_or_reading_outside_its_directory_is_refused(code: str) -> None:
    with pytest.raises(ToolError, match="outside the working directory"):
        run(code)


def test_subclasses_trick_to_reach_os_system_is_refused() -> None:
    code = """
        wrap = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]
        wrap.__init__.__globals__['system']('cat /etc/passwd')
    """
    with pytest.raises(ToolError, match=r"os\.system is refused"):
        run(code)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import subprocess", "import of 'subprocess' is refused"),
        ("import ctypes", "import of 'ctypes' is refused"),
        ("import os; os.fork()", r"os\.fork is refused"),
        ("import os; os.execv('/bin/sh', ['sh'])", r"os\.exec is refused"),
    ],
)
def test_process_creation_and_native_code_are_refused(code: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        run(code)


def test_endless_loop_is_killed_at_the_time_limit() -> None:
    with pytest.raises(ToolError, match=r"time limit exceeded.*1s"):
        run("while True: pass", PythonToolConfig(timeout_s=1))


def test_one_gigabyte_allocation_hits_the_memory_limit() -> None:
    with pytest.raises(ToolError, match="memory limit of 256 MB"):
        run("x = bytearray(1024 ** 3)")


def test_no_secrets_in_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-sandbox")
    out = run("import os; print(sorted(os.environ))")
    assert "OPENAI_API_KEY" not in out and "sk-canary" not in out


def test_output_is_capped() -> None:
    out = run("print('x' * 50000)", PythonToolConfig(max_output=1000))
    assert len(out) < 1100 and "more characters cut" in out


def test_errors_show_the_exception() -> None:
    with pytest.raises(ToolError, match="ZeroDivisionError"):
        run("print('before'); 1/0")
