"""bootstrap's package step (scripts/apt_install.sh) says what it is doing before the minutes it takes,
and asks apt to wait for a package lock another apt holds (unattended upgrades on a fresh machine) rather
than fail at once. apt-get is replaced by a recorder on PATH: nothing is installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORDER = """#!/bin/sh
echo "$@" >> "{calls}"
"""


def _run(tmp_path: Path, *packages: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "apt-get"
    fake.write_text(RECORDER.format(calls=calls) + f"exit {status}\n")
    fake.chmod(0o755)
    for name in ("id", "sudo"):  # as root, whoever runs the test
        tool = bin_dir / name
        tool.write_text('#!/bin/sh\n[ "$1" = "-u" ] && echo 0 && exit 0\nexec "$@"\n')
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "APT_LOCK_WAIT": "600"}
    return subprocess.run(
        [str(ROOT / "scripts" / "apt_install.sh"), *packages],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_it_announces_itself_and_waits_for_the_package_lock(tmp_path):
    done = _run(tmp_path, "wrk", "umoci")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("bootstrap: installing system packages: wrk umoci")
    assert "waits up to 10 minutes" in done.stderr
    update, install = (tmp_path / "calls").read_text().splitlines()
    assert update == "-o DPkg::Lock::Timeout=600 update -q"
    assert install == "-o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends wrk umoci"


def test_a_failed_install_says_which_step_failed(tmp_path):
    done = _run(tmp_path, "wrk", status=100)
    assert done.returncode == 1
    assert "bootstrap: FAILED: apt-get update" in done.stderr
