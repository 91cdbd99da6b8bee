"""What processes spend, read from /proc: CPU seconds, peak memory, the PostgreSQL backends of a database.
The benchmarks compare these within one run, where wall-clock times on shared cores would mislead."""

from __future__ import annotations

import os
import re
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and its children (a pool's or a server's workers)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        pids += [int(c) for c in children]
    return pids


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of `pids` still running."""
    out = {}
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[p] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return out


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings (a process started meanwhile counts from zero)."""
    return sum(t - before.get(p, 0.0) for p, t in after.items())


def postgres_pids(database: str, *, server: bool = True) -> list[int]:
    """The PostgreSQL processes serving `database` (its backends and autovacuum workers) and the
    server's own processes (WAL writer, checkpointer...; not with `server=False`), not the backends
    or autovacuum workers of other databases on a shared server. The server's own processes work for
    every database: on a shared server they carry other databases' writes too."""
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s OR (%s AND datname IS NULL)",
            [database, server],
        ).fetchall()
    return [r[0] for r in rows]


def peak_rss_mb(pids: list[int]) -> float:
    """The largest VmHWM (peak resident set) among `pids`."""
    peak = 0
    for p in pids:
        status = Path(f"/proc/{p}/status").read_text()
        peak = max(peak, int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)))
    return peak / 1024


def socket_ports(pids: list[int]) -> set[int]:
    """The local TCP ports of the sockets `pids` hold (their connections' own ends)."""
    inodes = set()
    for p in pids:
        try:
            fds = list(Path(f"/proc/{p}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def postgres_groups(database: str, clients: list[int]) -> dict[str, list[int]]:
    """`postgres_pids(database)` in three: `clients`' backends (connected from their sockets), the
    database's other backends, and the server's own processes (shared with every database)."""
    import psycopg

    ports = socket_ports(clients)
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, client_port, backend_type = 'client backend' FROM pg_stat_activity"
            " WHERE (datname = %s AND pid <> pg_backend_pid()) OR backend_type <> 'client backend'",
            [database],
        ).fetchall()
    groups: dict[str, list[int]] = {"clients": [], "others": [], "server": []}
    for pid, port, backend in rows:
        groups["server" if not backend else "clients" if port in ports else "others"].append(pid)
    return groups


def named_pids(name: str) -> list[int]:
    """The processes whose command name (/proc/PID/comm) is `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
