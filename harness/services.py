"""Make sure PostgreSQL and Redis answer on loopback; start them when they do not.

One implementation, used from pytest (``ensure_services()``) and from the shell through
``scripts/services.sh start|stop|status`` (which runs ``python -m harness.services``).

* PostgreSQL (127.0.0.1:5432 by default, from DATABASE_URL): if it does not answer, start the
  Debian cluster with ``pg_ctlcluster`` when one exists, otherwise ``initdb`` (trust auth, user
  postgres) into ``var/pgdata`` and ``pg_ctl start`` it bound to 127.0.0.1.
* Redis (127.0.0.1:6379 by default, from CELERY_BROKER_URL): if it does not answer,
  ``redis-server --daemonize yes --port 6379 --save '' --bind 127.0.0.1``.

``stop`` only stops what this module started (recorded in ``var/services/started.json``); a
PostgreSQL or Redis that was already running is left alone. Stdlib only, so it runs before the
venv exists.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

REPO_ROOT = Path(__file__).resolve().parents[1]
VAR = REPO_ROOT / "var"
STATE_DIR = VAR / "services"
STATE_FILE = STATE_DIR / "started.json"
PGDATA = VAR / "pgdata"
BOOTSTRAP_HINT = "run scripts/bootstrap.sh to install the project's tools"

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ServiceError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------- helpers


def _which(name: str) -> str | None:
    extra = glob.glob("/usr/lib/postgresql/*/bin")
    extra.sort(key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", *reversed(extra)])
    return shutil.which(name, path=path)


def _need(name: str) -> str:
    found = _which(name)
    if not found:
        raise ServiceError(f"{name!r} is not installed; {BOOTSTRAP_HINT}")
    return found


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _wait(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise ServiceError(f"{what} did not answer within {timeout:.0f}s")


def _load_state() -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads(STATE_FILE.read_text())
        return data
    except (OSError, ValueError):
        return {}


def _save_state(state: dict[str, object]) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2))


def _check_loopback(host: str, what: str) -> None:
    if host not in LOOPBACK:
        raise ServiceError(f"{what} host {host!r} is not a loopback address; refusing to manage it")


def postgres_address() -> tuple[str, int, str, str]:
    """(host, port, user, dbname) from DATABASE_URL (default postgres://postgres@127.0.0.1:5432/layerlens)."""
    url = urlparse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/layerlens"))
    return (
        url.hostname or "127.0.0.1",
        url.port or 5432,
        url.username or "postgres",
        (url.path or "/layerlens").lstrip("/") or "layerlens",
    )


def redis_address() -> tuple[str, int]:
    url = urlparse(os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
    return url.hostname or "127.0.0.1", url.port or 6379


# ---------------------------------------------------------------------------------- postgres


def postgres_ready(host: str | None = None, port: int | None = None) -> bool:
    h, p, user, _db = postgres_address()
    host, port = host or h, port or p
    pg_isready = _which("pg_isready")
    if pg_isready:
        rc = subprocess.run(
            [pg_isready, "-q", "-h", host, "-p", str(port), "-U", user, "-t", "2"],
            check=False,
            capture_output=True,
        ).returncode
        return rc == 0
    return _tcp_open(host, port)


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb/pg_ctl refuse to run as root: run them as the postgres user when we are root."""
    if os.geteuid() != 0:
        return argv
    runuser = _need("runuser")
    return [runuser, "-u", "postgres", "--", *argv]


def _debian_cluster(port: int) -> tuple[str, str] | None:
    """(version, name) of an existing Debian cluster configured for `port`, if any."""
    if not _which("pg_lsclusters") or not _which("pg_ctlcluster"):
        return None
    out = subprocess.run(
        [_need("pg_lsclusters"), "--no-header"], capture_output=True, text=True, check=False
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == str(port):
            return parts[0], parts[1]
    return None


def start_postgres(timeout: float = 60) -> str:
    """Start PostgreSQL if it does not answer. Returns what was done."""
    host, port, _user, _db = postgres_address()
    _check_loopback(host, "PostgreSQL")
    if postgres_ready(host, port):
        return "postgres: already running"
    state = _load_state()
    cluster = _debian_cluster(port)
    if cluster is not None:
        subprocess.run([_need("pg_ctlcluster"), cluster[0], cluster[1], "start"], check=True)
        state["postgres"] = {"kind": "cluster", "version": cluster[0], "name": cluster[1]}
        how = f"postgres: started Debian cluster {cluster[0]}/{cluster[1]}"
    else:
        initdb, pg_ctl = _need("initdb"), _need("pg_ctl")
        sockdir = VAR / "pgsock"
        if not (PGDATA / "PG_VERSION").exists():
            PGDATA.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(PGDATA, "postgres", "postgres")
            subprocess.run(
                _as_postgres([initdb, "-D", str(PGDATA), "-U", "postgres", "--auth=trust",
                              "-E", "UTF8", "--no-instructions"]),
                check=True, capture_output=True,
            )  # fmt: skip
        sockdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(sockdir, "postgres", "postgres")
        opts = f"-h {host} -p {port} -k {sockdir}"
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(PGDATA), "-l", str(PGDATA / "server.log"),
                          "-o", opts, "-w", "start"]),
            check=True, capture_output=True,
        )  # fmt: skip
        state["postgres"] = {"kind": "pgdata", "pgdata": str(PGDATA)}
        how = f"postgres: started {PGDATA}"
    _save_state(state)
    _wait(lambda: postgres_ready(host, port), timeout, "PostgreSQL")
    return how


def ensure_database(dbname: str | None = None) -> None:
    """Create the application database (from DATABASE_URL) if it does not exist."""
    host, port, user, db = postgres_address()
    dbname = dbname or db
    psql = _need("psql")
    base = [psql, "-h", host, "-p", str(port), "-U", user, "-d", "postgres", "-tAq"]
    exists = subprocess.run(
        [*base, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{dbname}'"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if exists != "1":
        subprocess.run([*base, "-c", f'CREATE DATABASE "{dbname}"'], check=True, capture_output=True)


def drop_database(dbname: str) -> None:
    """Drop a database if it exists, closing its connections first."""
    host, port, user, _ = postgres_address()
    subprocess.run(
        [_need("dropdb"), "-h", host, "-p", str(port), "-U", user, "--if-exists", "--force", dbname],
        check=True,
    )


def fresh_database(dbname: str) -> None:
    """An empty database of that name: dropped if it exists, then created."""
    drop_database(dbname)
    ensure_database(dbname)


def stop_postgres() -> str:
    state = _load_state()
    info = state.pop("postgres", None)
    _save_state(state)
    if not isinstance(info, dict):
        return "postgres: not started by us, left alone"
    if info.get("kind") == "cluster":
        subprocess.run([_need("pg_ctlcluster"), str(info["version"]), str(info["name"]), "stop"], check=False)
        return "postgres: stopped cluster"
    subprocess.run(
        _as_postgres([_need("pg_ctl"), "-D", str(info["pgdata"]), "-m", "fast", "-w", "stop"]),
        check=False, capture_output=True,
    )  # fmt: skip
    return "postgres: stopped"


# ---------------------------------------------------------------------------------- redis


def redis_ready(host: str | None = None, port: int | None = None) -> bool:
    h, p = redis_address()
    host, port = host or h, port or p
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(timeout: float = 20) -> str:
    host, port = redis_address()
    _check_loopback(host, "Redis")
    if redis_ready(host, port):
        return "redis: already running"
    redis_server = _need("redis-server")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    pidfile = STATE_DIR / f"redis-{port}.pid"
    subprocess.run(
        [redis_server, "--daemonize", "yes", "--port", str(port), "--save", "",
         "--bind", "127.0.0.1", "--pidfile", str(pidfile), "--dir", str(STATE_DIR),
         "--logfile", str(STATE_DIR / f"redis-{port}.log")],
        check=True, capture_output=True,
    )  # fmt: skip
    _wait(lambda: redis_ready(host, port), timeout, "Redis")
    state = _load_state()
    state["redis"] = {"pidfile": str(pidfile), "port": port}
    _save_state(state)
    return f"redis: started on {host}:{port}"


def stop_redis() -> str:
    state = _load_state()
    info = state.pop("redis", None)
    _save_state(state)
    if not isinstance(info, dict):
        return "redis: not started by us, left alone"
    try:
        pid = int(Path(str(info["pidfile"])).read_text().strip())
    except (OSError, ValueError):
        return "redis: no pidfile, nothing to stop"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "redis: already gone"
    if b"redis-server" not in cmdline:
        return "redis: pid reused by another program, left alone"
    os.kill(pid, 15)
    return "redis: stopped"


# ---------------------------------------------------------------------------------- API


def ensure_services(create_db: bool = False) -> list[str]:
    """Make PostgreSQL and Redis answer (start what is not running). Usable from pytest."""
    done = [start_postgres(), start_redis()]
    if create_db:
        ensure_database()
    return done


def stop_services() -> list[str]:
    return [stop_redis(), stop_postgres()]


def status() -> dict[str, bool]:
    return {"postgres": postgres_ready(), "redis": redis_ready()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cmd = args[0] if args else ""
    verbose = "-v" in args
    try:
        if cmd == "start":
            msgs = ensure_services(create_db="--create-db" in args)
            if "--fresh-test-db" in args:
                # an interrupted run leaves its test database, maybe with a worker still connected
                drop_database("test_" + postgres_address()[3])
                msgs.append("postgres: no test database left from an earlier run")
        elif cmd == "stop":
            msgs = stop_services()
        elif cmd == "status":
            st = status()
            print(" ".join(f"{k}={'up' if v else 'down'}" for k, v in st.items()))
            return 0 if all(st.values()) else 1
        else:
            usage = "usage: services.sh start [--create-db] [--fresh-test-db] [-v] | stop | status"
            print(usage, file=sys.stderr)
            return 2
    except (ServiceError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None)
        print(f"services: {exc}", file=sys.stderr)
        if detail:
            print(detail.decode(errors="replace") if isinstance(detail, bytes) else detail,
                  file=sys.stderr)  # fmt: skip
        return 1
    if verbose or cmd == "stop":
        for m in msgs:
            print(m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
