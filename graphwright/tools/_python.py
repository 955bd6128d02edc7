"""`python`: run a snippet in a subprocess with a time limit, a memory limit,
no network and a temporary working directory.

A sandbox of limited strength. What it does: a fresh isolated interpreter
(`-I -S`) with an empty environment (no API keys inherited), resource limits
(address space, CPU seconds, file size, open files), a wall-clock limit that
kills the whole process group, a private network namespace where the kernel
allows one (`unshare -rn`), and an audit hook that refuses sockets, process
creation, ctypes and file access outside the temporary directory. What it does
not do: it is not a security boundary against a determined attacker with a
CPython memory-corruption bug; run untrusted code in a container or VM.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from graphwright.tools._tool import Tool, ToolError

_BOOT = Path(__file__).with_name("_sandbox_boot.py")


class PythonToolConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(default=10.0, gt=0, description="wall-clock limit")
    memory_mb: int = Field(default=256, ge=32, description="address-space limit")
    max_output: int = Field(default=10_000, ge=100, description="characters of output kept")
    max_file_mb: int = Field(default=16, ge=1, description="largest file the code may write")


class PythonArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Python source; print() what you want to see")


@functools.cache
def _netns_prefix() -> tuple[str, ...]:
    """`unshare -rn` where it works here (a private, empty network namespace)."""
    exe = shutil.which("unshare")
    if not exe:
        return ()
    try:
        ok = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return ()
    return (exe, "-rn") if ok else ()


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters cut]"


def run_python(code: str, config: PythonToolConfig | None = None) -> str:
    """Run `code`; return its output, or raise `ToolError` saying what stopped it."""
    cfg = config or PythonToolConfig()
    with tempfile.TemporaryDirectory(prefix="gw-python-") as workdir:
        Path(workdir, "main.py").write_text(code, encoding="utf-8")
        cmd = [
            *_netns_prefix(),
            sys.executable,
            "-I",
            "-S",
            "-B",
            str(_BOOT),
            str(cfg.memory_mb * 1024 * 1024),
            str(int(cfg.timeout_s) + 1),
            str(cfg.max_file_mb * 1024 * 1024),
        ]
        # A fresh environment: nothing of ours (API keys above all) is inherited.
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8"}
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, killed as a whole
        )
        try:
            out, err = proc.communicate(timeout=cfg.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ToolError(
                f"time limit exceeded: the code ran longer than {cfg.timeout_s:g}s and was killed"
            ) from None
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    if proc.returncode != 0:
        if proc.returncode in (-signal.SIGKILL, -signal.SIGXCPU):
            raise ToolError(f"killed by the sandbox (signal {-proc.returncode}): CPU or memory limit")
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {proc.returncode}"
        if "MemoryError" in last:
            last = f"MemoryError: memory limit of {cfg.memory_mb} MB exceeded"
        before = f"\n--- output before the error ---\n{stdout}" if stdout.strip() else ""
        raise ToolError(_clip(last + before, cfg.max_output))
    result = stdout + (f"\n--- stderr ---\n{stderr}" if stderr.strip() else "")
    return _clip(result, cfg.max_output) if result else "(no output; use print())"


def build_python(config: PythonToolConfig | None = None) -> Tool:
    cfg = config or PythonToolConfig()

    def python(code: str) -> str:
        return run_python(code, cfg)

    return Tool(
        "python",
        "Run a Python snippet in a sandbox (no network, no files outside a temporary "
        f"directory, {cfg.timeout_s:g}s and {cfg.memory_mb} MB limits) and return what it printed.",
        PythonArgs,
        python,
    )
