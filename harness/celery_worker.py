"""A real Celery worker process (tests, benchmarks), on the broker and database it is given, taking the
queues it is told (all three unless told: `config/settings.py`, README "Queues")."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUEUES = ("control", "interactive", "bulk")


class CeleryWorker:
    def __init__(
        self,
        *,
        database_name: str,
        broker_url: str,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        queues: tuple[str, ...] = QUEUES,
        module: str = "celery",
    ) -> None:
        """`module` is what `python -m` runs with Celery's arguments: Celery itself, or a wrapper of it
        (`bench.profiled_worker`)."""
        self.module = module
        self.name = f"layerlens-test-{uuid.uuid4().hex[:8]}"
        self.broker_url = broker_url
        self.database_name = database_name
        self.concurrency = concurrency
        self.extra_env = env or {}
        unknown = set(queues) - set(QUEUES)
        if unknown or not queues:
            raise ValueError(f"queues are some of {QUEUES}, not {sorted(unknown) or 'none'}")
        self.queues = queues
        # made by start() (a worker built only to read its queue names leaves nothing behind)
        self.log_path = Path(tempfile.gettempdir()) / f"ll-worker-{uuid.uuid4().hex[:12]}" / "worker.log"
        self.earlier_log = ""  # the logs of earlier runs, kept when stop() removes the folder
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/layerlens")
        return {
            **os.environ,
            "DEBUG": "1",
            "DATABASE_URL": base.rsplit("/", 1)[0] + "/" + self.database_name,
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            **self.extra_env,
        }

    def queue_names(self) -> list[str]:
        """The broker's names of this worker's queues (the deployment's prefix, `CELERY_QUEUE`)."""
        prefix = self.env().get("CELERY_QUEUE") or "layerlens"
        return [f"{prefix}.{kind}" for kind in self.queues]

    def start(self) -> CeleryWorker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)  # stop() removes it again
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.module,
                "-A",
                "config",
                "worker",
                "--loglevel=INFO",
                f"--concurrency={self.concurrency}",
                "-Q",
                ",".join(self.queue_names()),
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"{self.name}@%h",
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so kill() takes the pool children too
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("celery worker exited:\n" + self.log_text())
            if "ready." in self._current_log():
                return self
            time.sleep(0.2)
        raise RuntimeError("celery worker did not become ready:\n" + self.log_text())

    def _current_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_text(self) -> str:
        return self.earlier_log + self._current_log()

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as a machine dying would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the pool children too
                self.proc.wait()
        self.proc = None
        self.earlier_log += self._current_log()
        shutil.rmtree(self.log_path.parent, ignore_errors=True)
