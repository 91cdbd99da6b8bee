"""Bring up Layerlens with a demo: web, workers, beat and a seeded local registry, scanned once.

It serves as a deployment would, with DEBUG off: a SECRET_KEY made once into var/secret_key (var/ is
never committed) and reused, so sessions and stored credentials survive a restart; static files are
collected and served by WhiteNoise. The settings it runs with are written to var/run.env, which
manage.py reads, so the README's commands work from any shell.

1. Migrate, collect static files, create the demo staff user.
2. Start a CNCF registry on loopback and push demo images built with umoci + skopeo.
3. Start the web server, two Celery workers (every queue; control and interactive) and Celery beat.
4. Register the demo registry (tracked hourly), scan it through the workers, print the summary.
5. Wait for Ctrl-C, then stop everything this script started.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.images import build_demo_registry  # noqa: E402
from harness.registry import RegistryServer  # noqa: E402
from harness.web import gunicorn_argv  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")
VAR = ROOT / "var" / "run"
RUN_ENV = ROOT / "var" / "run.env"  # read by manage.py
WEB_PORT = int(os.environ.get("LAYERLENS_PORT", "8000"))
REGISTRY_PORT = int(os.environ.get("DEMO_REGISTRY_PORT", "5000"))


def secret_key(var: Path) -> str:
    """The demo's SECRET_KEY: made once (readable by its owner only) and read back on every run."""
    path = var / "secret_key"
    if not path.exists():
        var.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def demo_settings(var: Path, environ: dict[str, str]) -> dict[str, str]:
    """The settings every process of the demo runs with: the demo's own, unless the caller's environment
    sets them, and every other variable config/settings.py reads that the caller's environment sets."""
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', (ROOT / "config" / "settings.py").read_text()))
    return {
        **{name: value for name, value in environ.items() if name in read},
        # DEBUG off: an error is a plain 500, not a page of settings, URLs and source paths
        "DEBUG": environ.get("DEBUG", "0"),
        "SECRET_KEY": environ.get("SECRET_KEY") or secret_key(var),
        "ALLOWED_HOSTS": environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost"),
        "LOG_FORMAT": environ.get("LOG_FORMAT", "plain"),  # people read these
        "DATABASE_URL": environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/layerlens"),
        "CELERY_BROKER_URL": environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
        "SCHEDULE_TICK_SECONDS": environ.get("SCHEDULE_TICK_SECONDS", "30"),
        # The demo registry listens on loopback, which the SSRF policy refuses unless allowed.
        "LAYERLENS_ALLOWED_NETWORKS": environ.get("LAYERLENS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"),
    }


def demo_env(var: Path, environ: dict[str, str]) -> dict[str, str]:
    """The environment every process of the demo runs with; what the caller's environment sets wins."""
    return {**environ, **demo_settings(var, environ)}


def run_env_write(path: Path, values: dict[str, str]) -> None:
    """Write `values` as KEY=VALUE lines, which manage.py reads for what its environment does not set,
    so commands from another shell run with the demo's settings. Owner-only: it holds SECRET_KEY."""
    bad = [k for k, v in values.items() if "\n" in v or "\r" in v]
    if bad:
        raise ValueError(f"{', '.join(bad)}: a value on several lines cannot be written to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# written by `make run`: its settings, read by manage.py (the environment wins)\n")
        out.writelines(f"{key}={value}\n" for key, value in sorted(values.items()))
    tmp.replace(path)


ENV: dict[str, str] = {}
WEB = [PY, "-m", *gunicorn_argv(WEB_PORT)]
children: list[subprocess.Popen[bytes]] = []


def manage(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=ENV, check=check)


def spawn(name: str, argv: list[str]) -> None:
    log = open(VAR / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
    children.append(subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT))


def stop_all(*_: object) -> None:
    for proc in reversed(children):
        if proc.poll() is None:
            proc.terminate()
    for proc in children:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Started in the background, a process may inherit SIGINT ignored; Ctrl-C and kill must both stop us.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run()
    except KeyboardInterrupt:
        print("\nstopping ...")
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"make run: step failed: {' '.join(map(str, exc.cmd[1:]))}", file=sys.stderr)
        return 1
    finally:
        stop_all()


def run() -> int:
    VAR.mkdir(parents=True, exist_ok=True)
    ENV.update(demo_env(ROOT / "var", dict(os.environ)))
    run_env_write(RUN_ENV, demo_settings(ROOT / "var", dict(os.environ)))
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tc", "SELECT 1"], check=True, capture_output=True
    )
    database = urlsplit(ENV["DATABASE_URL"]).path.lstrip("/") or "layerlens"
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", database], capture_output=True)
    manage("migrate", "--noinput", "-v0")
    manage("collectstatic", "--noinput", "-v0")
    manage("demo_user", "--username", "demo", "--password", "demo")

    registry_dir = ROOT / "var" / "demo-registry"
    subprocess.run(["rm", "-rf", str(registry_dir)], check=True)
    try:
        registry = RegistryServer(workdir=registry_dir, port=REGISTRY_PORT).start()
    except RuntimeError:
        print(f"port {REGISTRY_PORT} is taken; the demo registry takes a free one", flush=True)
        registry = RegistryServer(workdir=registry_dir).start()
    children.append(registry.proc)  # type: ignore[arg-type]
    print(f"demo registry: {registry.url}  (seeding with umoci + skopeo ...)", flush=True)
    t0 = time.monotonic()
    pushed = build_demo_registry(registry.host)
    print(f"pushed {len(pushed)} tags in {time.monotonic() - t0:.1f}s", flush=True)

    spawn("web", WEB)
    # Two workers on two cores. The first takes every queue with two processes, so a crawl has both
    # cores; the second, one process on control and interactive only, is why beat's tasks and a
    # one-tag scan never wait for a crawl's batch to end (README "Queues"). It costs a process's
    # memory and, idle nearly always, no CPU; the two cores are shared by the OS scheduler, not queued.
    queues = os.environ.get("CELERY_QUEUE", "layerlens")
    celery_worker = [PY, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO"]
    spawn(
        "worker",
        [
            *celery_worker,
            "-Q",
            f"{queues}.bulk,{queues}.interactive,{queues}.control",
            "-c",
            "2",
            "-n",
            "worker@%h",
        ],
    )
    spawn(
        "worker-control",
        [*celery_worker, "-Q", f"{queues}.control,{queues}.interactive", "-c", "1", "-n", "control@%h"],
    )
    spawn(
        "beat",
        [
            PY,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "--loglevel=INFO",
            "--schedule",
            str(VAR / "celerybeat-schedule"),
        ],
    )
    manage("registry", "add", registry.url, "--track", "--interval", "3600")

    t0 = time.monotonic()
    scan = manage("scan", registry.url, "--timeout", "600", check=False)
    took = time.monotonic() - t0
    manage("report", "--registry", registry.host)
    print(
        f"""
Layerlens is up (scan took {took:.1f}s{"" if scan.returncode == 0 else ", with errors: see above"}).
  pages      http://127.0.0.1:{WEB_PORT}/ui/?registry={registry.host}   (login demo / demo)
  API        http://127.0.0.1:{WEB_PORT}/api/v1/summary/?registry={registry.host}
  API docs   http://127.0.0.1:{WEB_PORT}/api/docs/
  admin      http://127.0.0.1:{WEB_PORT}/admin/   (login demo / demo)
  registry   {registry.url}   logs in {VAR}
  CLI        (manage.py reads the demo's settings from var/run.env, from any shell)
             .venv/bin/python manage.py report --registry {registry.host} --json
             .venv/bin/python manage.py token create demo --name NAME   (an API token, shown once)
Ctrl-C stops everything started here.""",
        flush=True,
    )
    while all(p.poll() is None for p in children):
        time.sleep(1)
    print("a service stopped unexpectedly; see the logs in", VAR, file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
