"""A real Docker Engine (`dockerd`, vfs storage driver) private to its caller (tests, benchmarks).

It listens only on its own unix socket (no TCP), creates no bridge and touches no iptables.
Registries on 127.0.0.0/8 are treated as insecure (plain HTTP) by dockerd by default (checked with
dockerd 20.10: without the flag `docker info` already lists 127.0.0.0/8 as insecure and a push to
http://127.0.0.1:PORT works); we still pass ``--insecure-registry 127.0.0.0/8`` to make it explicit.

Usage::

    with DockerDaemon() as d:
        env = d.env()              # {"DOCKER_HOST": "unix:///tmp/ll-dk-xxx/docker.sock", ...}
        d.docker("info")
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from .tools import require_tool, run, stop_process


class DockerDaemon:
    def __init__(self, *, startup_timeout: float = 60) -> None:
        self._startup_timeout = startup_timeout
        # Short path under /tmp: unix socket paths are limited to 107 bytes.
        self.workdir = Path(tempfile.mkdtemp(prefix="ll-dk-", dir="/tmp"))
        self.data_root = self.workdir / "data"
        self.exec_root = self.workdir / "exec"
        self.socket = self.workdir / "docker.sock"
        self.pidfile = self.workdir / "dockerd.pid"
        self.config_dir = self.workdir / "cli"  # DOCKER_CONFIG for the CLI: no user config leaks
        self.log_path = self.workdir / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """Value for DOCKER_HOST."""
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        """Environment for docker CLI calls against this daemon (legacy builder, own config)."""
        return {
            "DOCKER_HOST": self.host,
            "DOCKER_CONFIG": str(self.config_dir),
            "DOCKER_BUILDKIT": "0",
            "DOCKER_CLI_HINTS": "false",
        }

    def docker(self, *args: str, timeout: float = 300, cwd: str | None = None) -> str:
        """Run the docker CLI against this daemon, return stdout (raises on failure)."""
        docker = require_tool("docker")
        proc = run([docker, *args], env=self.env(), timeout=timeout, cwd=cwd)
        return proc.stdout.decode()

    def start(self) -> DockerDaemon:
        dockerd = require_tool("dockerd")
        require_tool("docker")
        for d in (self.data_root, self.exec_root, self.config_dir):
            d.mkdir(parents=True, exist_ok=True)
        argv = [
            dockerd,
            "--storage-driver=vfs",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--host", self.host,
            "--pidfile", str(self.pidfile),
            "--insecure-registry", "127.0.0.0/8",
        ]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115 - child owns it
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            start_new_session=True,  # keep terminal signals (Ctrl-C) from reaching it first
        )
        log.close()
        atexit.register(self.stop)  # never outlive the test process, even without cleanup()
        deadline = time.monotonic() + self._startup_timeout
        docker = require_tool("docker")
        full_env = {**os.environ, **self.env()}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.socket.exists():
                ok = subprocess.run(
                    [docker, "info", "--format", "{{.ServerVersion}}"],
                    env=full_env,
                    capture_output=True,
                    timeout=20,
                    check=False,
                )
                if ok.returncode == 0:
                    self.server_version = ok.stdout.decode().strip()
                    return self
            time.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"dockerd did not become ready:\n{tail}")

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM our dockerd, wait, then SIGKILL. Only the process this object started."""
        if self.proc is not None:
            stop_process(self.proc, timeout=timeout)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        # vfs leaves plain directories; nothing is mounted with --bridge=none and no containers
        # running, but be careful not to follow mounts if any are left: unmount-free rmtree.
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DockerDaemon:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
