"""Small helpers shared by the harness modules: tool lookup and subprocess running."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_HINT = "run scripts/bootstrap.sh to install the project's tools"

# Where Debian puts tools that may not be on a non-root PATH.
_EXTRA_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin")


class ToolMissing(RuntimeError):
    """A required external program is not installed."""


def require_tool(name: str) -> str:
    """Return the absolute path of executable `name` or raise ToolMissing with a bootstrap hint."""
    found = shutil.which(name)
    if found is None:
        found = shutil.which(name, path=os.pathsep.join(_EXTRA_DIRS))
    if found is None:
        raise ToolMissing(f"required tool {name!r} is not installed; {BOOTSTRAP_HINT}")
    return found


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 300,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command, capture output, raise RuntimeError with the output on failure."""
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    proc = subprocess.run(
        [str(a) for a in argv],
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        input=input,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed ({proc.returncode}): {' '.join(str(a) for a in argv)}\n"
            f"--- stdout ---\n{proc.stdout.decode(errors='replace')[-4000:]}\n"
            f"--- stderr ---\n{proc.stderr.decode(errors='replace')[-4000:]}"
        )
    return proc


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM the given child process, wait, then SIGKILL it. Only ever this one pid."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
