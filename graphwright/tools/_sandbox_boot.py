"""Run inside the sandbox child process, before the user's code (stdlib only).

Sets resource limits, then installs an audit hook (which code cannot remove)
that refuses network use, process creation, native-code loading and file
access outside the working directory. This is a sandbox of limited strength:
see graphwright.tools._python.
"""

import os
import resource
import sys

_ROOT = os.path.realpath(os.getcwd())
_LIMITS = sys.argv[1:4]
_MEM, _CPU, _FSIZE = (int(x) for x in _LIMITS)


def _limit(which: int, value: int) -> None:
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass


_limit(resource.RLIMIT_AS, _MEM)
_limit(resource.RLIMIT_CPU, _CPU)
_limit(resource.RLIMIT_FSIZE, _FSIZE)
_limit(resource.RLIMIT_CORE, 0)
_limit(resource.RLIMIT_NOFILE, 64)

# The interpreter must still read its own standard library.
_READ_OK = tuple(
    sorted(
        {
            os.path.realpath(p) + os.sep
            for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path)
            if p and os.path.isabs(p) and os.path.realpath(p) != _ROOT
        }
    )
)
_BLOCKED_IMPORTS = {"ctypes", "_ctypes", "_posixsubprocess", "subprocess", "multiprocessing"}
_BLOCKED_EVENTS = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "subprocess.Popen",
    "ctypes.",
    "socket.",
    "os.chdir",
    "os.chroot",
    "sys.setrecursionlimit",
    "os.link",
    "os.symlink",
    "os.putenv",
    "os.unsetenv",
)


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _inside(path: str) -> bool:
    real = os.path.realpath(path)
    return real == _ROOT or real.startswith(_ROOT + os.sep)


def _hook(event: str, args: tuple) -> None:  # type: ignore[type-arg]
    if event == "open":
        path, mode, flags = args[0], args[1], args[2] if len(args) > 2 else 0
        if isinstance(path, int) or path is None:
            return
        path = os.fsdecode(path)
        if _inside(path):
            return
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if not writing and os.path.realpath(path).startswith(_READ_OK):
            return
        raise PermissionError(f"sandbox: open({path!r}) outside the working directory is refused")
    if event == "import" and args[0] in _BLOCKED_IMPORTS:
        raise ImportError(f"sandbox: import of {args[0]!r} is refused")
    if event.startswith(_BLOCKED_EVENTS):
        if event.startswith("socket."):
            raise PermissionError(f"sandbox: network access is refused ({event})")
        raise PermissionError(f"sandbox: {event} is refused")
    if event in ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.chmod"):
        if not all(_inside(os.fsdecode(a)) for a in args[:2] if isinstance(a, str | bytes)):
            raise PermissionError(f"sandbox: {event} outside the working directory is refused")


def _main() -> None:
    with open("main.py", encoding="utf-8") as f:
        source = f.read()
    code = compile(source, "main.py", "exec")
    sys.argv = ["main.py"]
    sys.addaudithook(_hook)
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


_main()
