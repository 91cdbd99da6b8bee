"""Images built in the test's own dockerd for the engine tests, and the engine's own accounting."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.dockerd import DockerDaemon
from harness.images import write_tree

PREFIX = "ll-engine"


@dataclass(frozen=True)
class EngineImages:
    daemon: DockerDaemon
    ids: dict[str, str]  # tag -> image ID
    container: str  # a created (never started) container of app:1, so `Containers` is not always 0

    def system_df(self) -> dict:
        """`GET /system/df` in raw bytes, straight from the engine's socket (curl, not the SDK)."""
        out = subprocess.run(
            ["curl", "-sf", "--unix-socket", str(self.daemon.socket), "http://engine/system/df"],
            capture_output=True,
            check=True,
            timeout=120,
        )
        return json.loads(out.stdout)

    def history(self, ref: str) -> list[dict]:
        text = self.daemon.docker(
            "image", "history", "--no-trunc", "--human=false", "--format", "{{json .}}", ref
        )
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def engine_images(dockerd_server: DockerDaemon) -> EngineImages:
    """FROM scratch images sharing a base, with empty layers, a zero-size layer and two tags on one ID."""
    tmp = Path(tempfile.mkdtemp(prefix="ll-eng-"))
    d = dockerd_server
    try:
        base = tmp / "base"
        write_tree(base / "a", "engine-base-a", {"etc/a.bin": 70_001, "lib/b.bin": 12_345})
        (base / "empty" / "dir").mkdir(parents=True)
        (base / "Dockerfile").write_text(
            "FROM scratch\nCOPY a/ /\nENV BASE=1\nCOPY empty/ /opt/\nLABEL kind=base\n"
        )
        d.docker("build", "--network", "none", "-q", "-t", f"{PREFIX}/base:1", str(base))
        d.docker("tag", f"{PREFIX}/base:1", f"{PREFIX}/alias:1")
        for name, seed, size in (("app", "engine-app", 33_333), ("other", "engine-other", 21_000)):
            ctx = tmp / name
            write_tree(ctx / "c", seed, {f"srv/{name}.bin": size})
            (ctx / "Dockerfile").write_text(f'FROM {PREFIX}/base:1\nCOPY c/ /\nCMD ["/srv/{name}.bin"]\n')
            d.docker("build", "--network", "none", "-q", "-t", f"{PREFIX}/{name}:1", str(ctx))
        ids = {
            tag: d.docker("image", "inspect", "--format", "{{.Id}}", f"{PREFIX}/{tag}").strip()
            for tag in ("base:1", "alias:1", "app:1", "other:1")
        }
        container = d.docker("create", "--network", "none", f"{PREFIX}/app:1").strip()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return EngineImages(daemon=d, ids=ids, container=container)
